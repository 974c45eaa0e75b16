"""g_phi: every backbone family, the widened stem, an unsaturated start, checkpoints."""

from __future__ import annotations

import pytest
import timm
import torch

from models.quality_predictor import (
    PAPER_BACKBONES,
    QualityPredictor,
    QualityPredictorConfig,
    load_quality_predictor,
    quality_checkpoint,
    widen_first_conv,
)

# Tiny stand-ins of the paper's five families (ResNet, EfficientNet, ConvNeXt,
# MobileNetV3, DenseNet); timm has no test_* DenseNet, so the real one runs at 32 px.
FAMILIES = [
    "test_resnet",
    "test_efficientnet",
    "test_convnext",
    "mobilenetv3_small_050",
    "densenet121",
]


def make(backbone: str, **kw) -> QualityPredictor:
    torch.manual_seed(0)
    return QualityPredictor(QualityPredictorConfig(backbone=backbone, **kw))


def test_forward_backward_every_family():
    for name in FAMILIES:
        model = make(name)
        x = torch.randn(2, 4, 32, 32, requires_grad=True)
        q = model(x)
        assert q.shape == (2,) and torch.all((q > 0) & (q < 1)), name
        q.sum().backward()
        stem = dict(model.named_parameters())
        grads = [p.grad for p in stem.values() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert x.grad[:, 3].abs().sum() > 0, f"{name}: no gradient reaches the mask channel"
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        make("test_resnet")(torch.randn(1, 3, 32, 32))


def test_mask_filter_starts_as_mean_of_rgb_filters():
    base = timm.create_model("test_resnet", num_classes=0)
    rgb = base.conv1[0].weight.detach().clone()
    name = widen_first_conv(base)
    widened = base.get_submodule(name).weight
    assert widened.shape[1] == 4
    assert torch.equal(widened[:, :3], rgb)
    assert torch.allclose(widened[:, 3], rgb.mean(dim=1))


def test_fresh_gphi_is_unsaturated_with_spread_and_head_gradient():
    """docs/METHOD.md §3.2 head start (reference choice): no constant output at the start."""
    model = make("resnet18")
    model.train()
    x = torch.randn(16, 4, 64, 64)
    x[:, 3] = (torch.rand(16, 64, 64) < torch.rand(16, 1, 1)).float()
    q = model(x)
    assert torch.all((q > 0.6) & (q < 0.95))  # near init_quality 0.8, not saturated
    assert q.std() > 1e-3
    loss = torch.nn.functional.smooth_l1_loss(q, torch.rand(16))
    loss.backward()
    assert model.head[4].weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_checkpoint_round_trip_rebuilds_backbone_and_settings(tmp_path):
    for backbone in ("test_efficientnet", "test_convnext"):
        model = make(backbone, dropout=0.3, init_quality=0.7).eval()
        path = tmp_path / f"{backbone}.pth"
        torch.save(quality_checkpoint(model, image_size=64, vqm_config={"x": 1}, seed=5), path)
        loaded, ckpt = load_quality_predictor(path)
        assert loaded.config == model.config
        assert ckpt["image_size"] == 64 and ckpt["seed"] == 5
        x = torch.randn(2, 4, 64, 64)
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
        assert not loaded.training
        assert not any(p.requires_grad for p in loaded.parameters())


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="--mq_checkpoint"):
        load_quality_predictor(tmp_path / "missing.pth")
    bare = tmp_path / "bare.pth"
    torch.save(make("test_resnet").state_dict(), bare)  # a bare state dict, as the release saved
    with pytest.raises(ValueError, match="not a g_phi checkpoint"):
        load_quality_predictor(bare)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable g_phi checkpoint"):
        load_quality_predictor(junk)


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    donor = timm.create_model("test_resnet", num_classes=10)
    for p in donor.parameters():
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "weights.pth"
    torch.save(donor.state_dict(), path)
    model = QualityPredictor(QualityPredictorConfig(backbone="test_resnet"), pretrained_path=path)
    stem = model.backbone.conv1[0].weight
    assert torch.equal(stem[:, :3], donor.conv1[0].weight)
    assert torch.equal(model.backbone.layer1[0].conv1.weight, donor.layer1[0].conv1.weight)
    with pytest.raises(FileNotFoundError, match="--pretrained_path"):
        QualityPredictor(
            QualityPredictorConfig(backbone="test_resnet"), pretrained_path=tmp_path / "none.pth"
        )
    with pytest.raises(ValueError, match="unknown timm backbone"):
        QualityPredictor(QualityPredictorConfig(backbone="resnet_nonexistent"))


def test_paper_backbones_name_imagenet_1k_weights_timm_knows():
    """Pinned tags: an untagged name would follow timm's changing default weights."""
    known = set(timm.list_pretrained())
    for name in PAPER_BACKBONES.values():
        assert name in known, name
        assert name.split(".")[1].endswith("in1k"), name
