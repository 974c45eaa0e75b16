"""The quality predictor g_phi: (image, mask) -> predicted Dice (docs/METHOD.md §3).

- Backbone: any timm model (the paper's: resnet18.a1_in1k by default, MobileNetV3,
  EfficientNet-B0, DenseNet121, ConvNeXt-T), global average pooled.
- Input (§3.1): 4 channels, ImageNet-normalised RGB + a {0, 1} (or soft, in Phase 2) mask,
  built by :func:`data.mq_dataset.quality_input`. The first convolution is widened to 4
  inputs; the mask filter starts as the mean of the RGB filters, so pretrained features see
  the mask as one more grey-level image.
- Head (§3.2): Dropout(p) -> Linear(C, 256) -> ReLU -> Dropout(p/2) -> Linear(256, 1) ->
  sigmoid. Kaiming init for the hidden layer. The last layer starts with small weights and
  its bias at the logit of the expected mean target (reference choice), so that the
  sigmoid starts unsaturated and g_phi does not lock onto a constant output.
- Checkpoints carry the backbone name and every setting needed to rebuild the model and
  its inputs (image size, normalisation, VQM mix), so Phase 2 loads any backbone.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from data.io import IMAGENET_MEAN, IMAGENET_STD
from models.pretrained import load_weights_file

CHECKPOINT_FORMAT = "qgssl.g_phi"
CHECKPOINT_VERSION = 1

# The paper's g_phi backbones (acronym -> timm name). Weight tags are pinned to ImageNet-1k
# checkpoints: an untagged name follows timm's default, which changes between releases
# (convnext_tiny resolves to an ImageNet-12k fine-tune in timm 1.0).
PAPER_BACKBONES: dict[str, str] = {
    "rn18": "resnet18.a1_in1k",
    "mnv3": "mobilenetv3_large_100.ra_in1k",
    "effb0": "efficientnet_b0.ra_in1k",
    "dn121": "densenet121.tv_in1k",
    "cnxt": "convnext_tiny.fb_in1k",
}


@dataclass
class QualityPredictorConfig:
    """Everything needed to rebuild g_phi's architecture."""

    backbone: str = "resnet18.a1_in1k"
    dropout: float = 0.15
    hidden_dim: int = 256
    in_chans: int = 4
    # Head start (docs/METHOD.md §3.2): sigmoid(bias) = init_quality, tiny weights.
    init_quality: float = 0.8
    head_init_std: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityPredictorConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _first_conv_name(model: nn.Module) -> str:
    """Name of the stem convolution: timm's pretrained_cfg, else the first 3-input conv."""
    name = getattr(model, "pretrained_cfg", {}).get("first_conv")
    if isinstance(name, (list, tuple)):
        name = name[0]
    if name:
        try:
            module = model.get_submodule(name)
            if isinstance(module, nn.Conv2d):
                return name
            if isinstance(module, nn.Sequential) and isinstance(module[0], nn.Conv2d):
                return f"{name}.0"
        except AttributeError:
            pass
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            return n
    raise ValueError(f"{type(model).__name__}: no 3-channel input convolution found to widen")


def widen_first_conv(model: nn.Module, extra_channels: int = 1) -> str:
    """Widen the stem conv from 3 to 3 + extra inputs; new filters = mean of the RGB filters.

    The conv is deep-copied rather than rebuilt, so subclasses (timm's same-padding or
    weight-standardised convs) keep their behaviour. Returns the conv's name.
    """
    name = _first_conv_name(model)
    conv: nn.Conv2d = model.get_submodule(name)
    if conv.in_channels != 3:
        raise ValueError(f"stem conv {name} has {conv.in_channels} inputs, expected 3")
    if conv.groups != 1:
        raise ValueError(f"stem conv {name} is grouped ({conv.groups}); cannot widen it")
    weight = conv.weight.detach()
    mean = weight.mean(dim=1, keepdim=True)
    widened = copy.deepcopy(conv)
    widened.in_channels = 3 + extra_channels
    widened.weight = nn.Parameter(torch.cat([weight, mean.repeat(1, extra_channels, 1, 1)], 1))
    model.set_submodule(name, widened)
    return name


def create_backbone(
    name: str, pretrained: bool = False, pretrained_path: str | Path | None = None
) -> nn.Module:
    """A timm feature extractor (pooled features), optionally with pretrained weights.

    `pretrained_path` loads a local weights file (no download); otherwise `pretrained`
    asks timm for its own source (Hugging Face hub), which needs internet access.
    """
    kwargs: dict[str, Any] = {"num_classes": 0, "global_pool": "avg"}
    path = Path(pretrained_path) if pretrained_path else None
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(
                f"g_phi pretrained weights not found: {path} (--pretrained_path)"
            )
        pretrained = False  # the file is loaded below, with every key checked
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
        if path is not None:
            load_weights_file(model, path, what=f"g_phi backbone {name}")
        return model
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ValueError(
                f"unknown timm backbone {name!r} (see timm.list_models(); the paper's: "
                f"{sorted(PAPER_BACKBONES.values())})"
            ) from None
        raise
    except OSError as exc:  # hub download failed (no internet)
        raise RuntimeError(
            f"could not download pretrained weights for {name!r} ({exc}); pass a local file "
            "with --pretrained_path, or train from random init with --pretrained false"
        ) from None


class QualityPredictor(nn.Module):
    """g_phi(x (+) y) = sigmoid(head(GAP(backbone(x (+) y)))), x (+) y 4-channel."""

    def __init__(
        self,
        config: QualityPredictorConfig | None = None,
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config or QualityPredictorConfig()
        c = self.config
        self.backbone = create_backbone(c.backbone, pretrained, pretrained_path)
        widen_first_conv(self.backbone, c.in_chans - 3)
        # Width of the pooled output (MobileNetV3 adds a conv head after num_features).
        features = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = nn.Sequential(
            nn.Dropout(c.dropout),
            nn.Linear(features, c.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(c.dropout / 2),
            nn.Linear(c.hidden_dim, 1),
        )
        hidden, last = self.head[1], self.head[4]
        nn.init.kaiming_normal_(hidden.weight, nonlinearity="relu")
        nn.init.zeros_(hidden.bias)
        nn.init.normal_(last.weight, std=c.head_init_std)
        nn.init.constant_(last.bias, math.log(c.init_quality / (1 - c.init_quality)))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B,) of the predicted quality; x is (B, 4, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(
                f"g_phi expects (B, {self.config.in_chans}, H, W) = normalised RGB + mask, "
                f"got {tuple(x.shape)}"
            )
        return self.head(self.backbone(x)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted Dice in [0, 1], shape (B,), float32 even under autocast."""
        # fp16's sigmoid rounds to 1 for logits above ~8, and QAR's gradient vanishes
        return torch.sigmoid(self.forward_logits(x).float())


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def quality_checkpoint(model: QualityPredictor, **settings: Any) -> dict[str, Any]:
    """The checkpoint dict: model config and weights plus the data settings it needs.

    `settings` should include image_size and vqm_config; normalisation is added here.
    """
    module = model.module if hasattr(model, "module") else model
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": module.config.to_dict(),
        "state_dict": module.state_dict(),
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        **settings,
    }


def read_quality_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a g_phi checkpoint dict (clear errors for wrong files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"g_phi checkpoint not found: {path} (--mq_checkpoint)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt file, pickle of foreign classes, not a torch file
        raise ValueError(f"{path} is not a readable g_phi checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"{path} is not a g_phi checkpoint written by training/train_mq.py "
            f"(expected format {CHECKPOINT_FORMAT!r}; found {keys})"
        )
    if ckpt.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: g_phi checkpoint version {ckpt['version']} is newer than "
            f"this code ({CHECKPOINT_VERSION})"
        )
    return ckpt


def load_quality_predictor(
    path: str | Path, map_location: str | torch.device = "cpu", frozen: bool = True
) -> tuple[QualityPredictor, dict]:
    """Rebuild g_phi from a checkpoint (any backbone). Frozen: eval mode, no gradients.

    Returns the model and the checkpoint dict (its settings: image_size, vqm_config, ...).
    """
    ckpt = read_quality_checkpoint(path, map_location)
    model = QualityPredictor(QualityPredictorConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.to(map_location)
    if frozen:
        model.eval()
        model.requires_grad_(False)
    return model, ckpt
