"""Loading the official Swin-T checkpoint layout into Swin-UNet (docs/METHOD.md §4). The
test writes its own checkpoint: a random timm Swin-T renamed to the official layout (patch
merging at the end of stage i, ``head`` not ``head.fc``, buffers stored)."""

from __future__ import annotations

import re

import pytest
import timm
import torch
from timm.layers import resize_rel_pos_bias_table

from models.seg_models import create_seg_model
from models.swin_unet import SwinUNet
from models.swin_unet_utils import load_swin_pretrained


@pytest.fixture(scope="module")
def official_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10)
    state = {}
    for key, value in swin.state_dict().items():
        key = re.sub(
            r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key
        )
        state[key.replace("head.fc.", "head.")] = value.clone()
    # the official files also hold these buffers (persistent in the official code)
    for key, value in swin.named_buffers():
        if value is not None and ("relative_position_index" in key or "attn_mask" in key):
            state[key] = value.clone()
    return state


@pytest.fixture(scope="module")
def checkpoint_path(official_state_dict, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("swin") / "swin_tiny_patch4_window7_224_22k.pth"
    torch.save({"model": official_state_dict}, path)
    return str(path)


def _is_buffer(key: str) -> bool:
    return "relative_position_index" in key or "attn_mask" in key


def _to_timm(key: str) -> str:
    return re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", key)


def test_official_layout_sanity(official_state_dict):
    # the fixture really is in the official layout
    for key in (
        "patch_embed.proj.weight",
        "layers.0.blocks.0.attn.qkv.weight",
        "layers.0.blocks.0.attn.relative_position_bias_table",
        "layers.0.downsample.reduction.weight",
        "norm.weight",
        "head.weight",
    ):
        assert key in official_state_dict
    assert "layers.3.downsample.reduction.weight" not in official_state_dict


def test_every_encoder_key_loads_at_224(official_state_dict, checkpoint_path, capsys):
    model = SwinUNet(image_size=224)
    report = load_swin_pretrained(model, checkpoint_path)
    state = model.state_dict()
    encoder_keys = [
        k for k in official_state_dict if not _is_buffer(k) and not k.startswith("head")
    ]
    for key in encoder_keys:  # window 7 at 224: every tensor, bias tables included, exact
        torch.testing.assert_close(
            state[f"encoder.{_to_timm(key)}"], official_state_dict[key], rtol=0, atol=0
        )
    assert len(report.loaded_encoder) == len(encoder_keys)
    assert report.resized == []
    # decoder level i mirrors encoder stage i's blocks (2 blocks at every level by default)
    for level in range(4):
        for block in range(2):
            for suffix in ("attn.qkv.weight", "mlp.fc2.bias", "attn.relative_position_bias_table"):
                torch.testing.assert_close(
                    state[f"decoder.{level}.blocks.{block}.{suffix}"],
                    official_state_dict[f"layers.{level}.blocks.{block}.{suffix}"],
                    rtol=0,
                    atol=0,
                )
    assert len(report.loaded_decoder) == 4 * 2 * 13  # 13 tensors per Swin block
    # skipped: the classifier head and the stored buffers, with reasons
    assert report.skipped["head.weight"] == "classifier head, not used"
    buffers = [k for k in official_state_dict if _is_buffer(k)]
    assert all(report.skipped[k].startswith("buffer") for k in buffers)
    assert len(report.skipped) == 2 + len(buffers)
    # decoder parts with no encoder counterpart stay at init and are listed
    assert "segmentation_head.weight" in report.not_initialised
    assert "decoder.2.concat_proj.weight" in report.not_initialised
    printed = capsys.readouterr().out
    assert f"loaded {report.num_loaded} tensors" in printed
    assert f"{len(report.loaded_encoder)} encoder" in printed
    assert f"skipped {len(report.skipped)} checkpoint keys" in printed
    assert "head.weight" in printed


@pytest.mark.filterwarnings("ignore::UserWarning:timm.layers.interpolate")
def test_bias_tables_resized_for_small_windows(official_state_dict, checkpoint_path):
    model = SwinUNet(image_size=64, decoder_depths=(2, 2, 2, 2))  # windows 8, 8, 4, 2
    report = load_swin_pretrained(model, checkpoint_path, verbose=False)
    state = model.state_dict()
    for key, value in official_state_dict.items():
        if _is_buffer(key) or key.startswith("head"):
            continue
        loaded = state[f"encoder.{_to_timm(key)}"]
        if key.endswith("relative_position_bias_table"):
            stage = int(key.split(".")[1])
            window = (8, 8, 4, 2)[stage]
            assert loaded.shape == ((2 * window - 1) ** 2, value.shape[1])
            expected = resize_rel_pos_bias_table(
                value, new_window_size=(window, window), new_bias_shape=loaded.shape
            )
            torch.testing.assert_close(loaded, expected)
        else:
            torch.testing.assert_close(loaded, value, rtol=0, atol=0)
    assert len(report.resized) == 12 + 8  # all encoder tables + the 4x2 mirrored decoder ones
    torch.testing.assert_close(
        state["decoder.3.blocks.1.attn.relative_position_bias_table"],
        state["encoder.layers.3.blocks.1.attn.relative_position_bias_table"],
    )
    logits = model(torch.randn(1, 3, 64, 64))
    assert torch.isfinite(logits).all()


def test_factory_loads_the_checkpoint(checkpoint_path, capsys):
    model = create_seg_model(
        "swinunet", encoder_weights="imagenet", image_size=64, swin_pretrained_path=checkpoint_path
    )
    assert isinstance(model, SwinUNet)
    assert "Swin checkpoint" in capsys.readouterr().out


def test_a_cnn_weights_file_leaves_swin_on_its_own_checkpoint(checkpoint_path, tmp_path, capsys):
    """ENCODER_WEIGHTS=<file> over a grid of models: Swin-UNet says it loads its own file."""
    cnn_file = tmp_path / "lite0.pth"
    torch.save({"conv_stem.weight": torch.zeros(1)}, cnn_file)
    model = create_seg_model(
        "swinunet",
        encoder_weights=str(cnn_file),
        image_size=64,
        swin_pretrained_path=checkpoint_path,
    )
    out = capsys.readouterr().out
    assert isinstance(model, SwinUNet)
    assert f"encoder_weights {cnn_file} is a weights file for the CNN encoders" in out
    assert str(checkpoint_path) in out and "Swin checkpoint" in out


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth") as err:
        load_swin_pretrained(SwinUNet(image_size=32), str(missing))
    assert "--swin_pretrained_path" in str(err.value)


def test_foreign_checkpoint_is_rejected(tmp_path):
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=2)
    foreign = tmp_path / "resnet18.pth"
    torch.save({"state_dict": resnet.state_dict()}, foreign)
    with pytest.raises(ValueError, match="not a Swin Transformer checkpoint") as err:
        load_swin_pretrained(SwinUNet(image_size=32), str(foreign))
    assert str(foreign) in str(err.value) and "'model'" in str(err.value)

    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        load_swin_pretrained(SwinUNet(image_size=32), str(not_torch))
