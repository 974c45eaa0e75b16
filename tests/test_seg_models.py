"""Segmentation networks f_theta (SPEC "Phase 2 ... Shared settings"): one forward/backward
test per entry of SEG_MODELS (smp's BaseModelTester style), factory errors, shape checks."""

from __future__ import annotations

import pytest
import torch

from models.seg_models import SEG_MODEL_ACRONYMS, SEG_MODELS, create_seg_model
from models.swin_unet import SwinUNet, stage_window_sizes, valid_image_sizes

SIZE = 64
# Small decoders keep the CNN tests fast; Swin-UNet's size is fixed by its Swin-T encoder.
SMALL = {
    "unetpp": {"encoder": "resnet18", "decoder_channels": (32, 16, 16, 8, 8)},
    "attentionunet": {"encoder": "resnet18", "decoder_channels": (32, 16, 16, 8, 8)},
    "swinunet": {},
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    args = {**SMALL[name], **kwargs}
    return create_seg_model(name, encoder_weights=None, image_size=SIZE, **args)


def test_table_and_acronyms_agree():
    assert set(SEG_MODELS) == {"unetpp", "attentionunet", "swinunet"}
    assert set(SEG_MODEL_ACRONYMS) == set(SEG_MODELS)
    assert SEG_MODEL_ACRONYMS == {"unetpp": "UP", "attentionunet": "AU", "swinunet": "SU"}


@pytest.mark.parametrize("name", sorted(SEG_MODELS))
def test_forward_backward(name):
    model = build(name).train()
    x = torch.randn(2, 3, SIZE, SIZE)
    logits, features = model.forward_features(x)
    assert logits.shape == (2, 1, SIZE, SIZE)
    assert features.ndim == 4 and features.shape[:2] == (2, model.decoder_feature_channels)
    assert torch.isfinite(logits).all() and torch.isfinite(features).all()

    (logits.mean() + features.mean()).backward()
    encoder_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert any(g.abs().sum() > 0 for g in encoder_grads), "no gradient reached the encoder"
    assert all(torch.isfinite(g).all() for g in encoder_grads)
    # no unused parameters (DistributedDataParallel would need find_unused_parameters)
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused


@pytest.mark.parametrize("name", sorted(SEG_MODELS))
def test_eval_forward_matches_forward_features(name):
    model = build(name).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_features(x)[0])


@pytest.mark.parametrize("name", sorted(SEG_MODELS))
def test_wrong_input_shape_is_explained(name):
    model = build(name)
    with pytest.raises(ValueError, match=r"divisible by 32|built for 64x64"):
        model(torch.randn(1, 3, SIZE + 16, SIZE))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 1, SIZE, SIZE))


def test_acronyms_and_case_resolve():
    model = create_seg_model(
        "AU",
        encoder="resnet18",
        encoder_weights="none",
        image_size=SIZE,
        decoder_channels=(32, 16, 16, 8, 8),
    )
    assert type(model).__name__ == "AttentionUNet"
    model = create_seg_model(
        "UnetPP",
        encoder="resnet18",
        encoder_weights="None",
        image_size=SIZE,
        decoder_channels=(32, 16, 16, 8, 8),
    )
    assert type(model).__name__ == "UnetPlusPlus"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        create_seg_model("unet3plus", encoder_weights=None)
    for name in SEG_MODELS:
        assert name in str(err.value)


def test_unknown_encoder_is_explained():
    with pytest.raises(ValueError, match="unknown smp encoder 'resnet35'"):
        create_seg_model("unetpp", encoder="resnet35", encoder_weights=None)


def test_cnn_rejects_bad_image_size_at_build_time():
    with pytest.raises(ValueError, match="divisible by 32"):
        create_seg_model("attentionunet", encoder="resnet18", encoder_weights=None, image_size=100)


def test_swinunet_missing_checkpoint_errors_before_training(tmp_path):
    missing = tmp_path / "swin_tiny_patch4_window7_224_22k.pth"
    with pytest.raises(FileNotFoundError, match="--swin_pretrained_path") as err:
        create_seg_model(
            "swinunet",
            encoder_weights="imagenet",
            image_size=SIZE,
            swin_pretrained_path=str(missing),
        )
    assert str(missing) in str(err.value)
    with pytest.raises(ValueError, match="needs --swin_pretrained_path"):
        create_seg_model("swinunet", encoder_weights="imagenet", image_size=SIZE)


def test_swinunet_random_init_ignores_path(tmp_path, capsys):
    model = create_seg_model(
        "SU",
        encoder_weights="none",
        image_size=SIZE,
        swin_pretrained_path=str(tmp_path / "absent.pth"),
    )
    assert isinstance(model, SwinUNet)
    assert "random init" in capsys.readouterr().out


def test_swin_windows_tile_every_stage():
    assert stage_window_sizes(224) == (7, 7, 7, 7)  # the paper's setting is unchanged
    assert stage_window_sizes(64) == (8, 8, 4, 2)
    assert stage_window_sizes(128) == (8, 8, 8, 4)
    for size in valid_image_sizes():
        for stage, window in enumerate(stage_window_sizes(size)):
            assert (size // (4 * 2**stage)) % window == 0
    assert 352 not in valid_image_sizes()
    with pytest.raises(ValueError, match="multiple of 32"):
        stage_window_sizes(100)
    with pytest.raises(ValueError, match="Valid sizes"):
        stage_window_sizes(352)


def test_swin_model_uses_the_chosen_windows():
    model = SwinUNet(image_size=SIZE)
    for stage, window in zip(model.encoder.layers, (8, 8, 4, 2)):
        assert all(block.window_size == (window, window) for block in stage.blocks)
    level = model.decoder[0]
    assert [b.shift_size for b in level.blocks] == [(0, 0), (4, 4)]  # W-MSA then SW-MSA


def test_swin_skip_source_and_decoder_depths():
    torch.manual_seed(0)
    model = SwinUNet(
        image_size=32, skip_source="official", decoder_depths=(1, 1, 1, 1), drop_path_rate=0.0
    )
    assert len(model.decoder[3].blocks) == 1
    logits = model(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 1, 32, 32) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="skip_source"):
        SwinUNet(image_size=32, skip_source="encoder")
