"""Segmentation networks f_theta for Phase 2 (SPEC "Phase 2 ... Shared settings").

One factory, :func:`create_seg_model`, looks every network up by name in :data:`SEG_MODELS`:

- ``unetpp``: U-Net++ from segmentation_models_pytorch (ResNet34 encoder by default).
- ``attentionunet``: U-Net with additive attention gates on the skips (Oktay et al. 2018),
  :mod:`models.attention_unet`.
- ``swinunet``: Swin-UNet (Cao et al. 2021) with a Swin-T encoder, :mod:`models.swin_unet`.

Every model takes an ImageNet-normalised batch (B, 3, H, W) and returns one-channel logits
(B, 1, H, W); the caller applies the sigmoid. ``model.forward_features(x)`` returns
``(logits, features)`` with ``features`` the last decoder feature map before the segmentation
head (the contrastive baseline's pixel InfoNCE reads it), ``model.decoder_feature_channels``
its channel count.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn

# Names as used by the release's SEG_MODELS variable, with the paper's acronyms.
SEG_MODEL_ACRONYMS: dict[str, str] = {
    "unetpp": "UP",
    "attentionunet": "AU",
    "swinunet": "SU",
}


def check_input_shape(
    x: torch.Tensor,
    model_name: str,
    divisor: int,
    size: int | None = None,
    valid_sizes: Sequence[int] | None = None,
) -> None:
    """Fail with a message that says what is wrong with an input batch (smp-style shape check).

    Args:
        x: input batch, expected (B, 3, H, W).
        model_name: used in the message.
        divisor: H and W must be multiples of it (the network's total downsampling).
        size: if set, the only accepted H = W (models built for one resolution, e.g. Swin-UNet).
        valid_sizes: listed in the message when ``size`` does not match.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"{model_name} expects an ImageNet-normalised RGB batch of shape (B, 3, H, W); "
            f"got shape {tuple(x.shape)}"
        )
    h, w = x.shape[-2:]
    if size is not None and (h, w) != (size, size):
        hint = f" Valid image sizes for this model: {list(valid_sizes)}." if valid_sizes else ""
        raise ValueError(
            f"{model_name} was built for {size}x{size} inputs (image_size={size}) and got "
            f"{h}x{w}; build it with image_size={h} if that size is valid.{hint}"
        )
    if h % divisor or w % divisor:

        def up(v: int) -> int:
            return -(-v // divisor) * divisor

        def down(v: int) -> int:
            return max(divisor, v // divisor * divisor)

        raise ValueError(
            f"{model_name} needs H and W divisible by {divisor} (its total downsampling); got "
            f"{h}x{w}. Resize or pad to {down(h)}x{down(w)} or {up(h)}x{up(w)}."
        )


class UnetPlusPlus(smp.UnetPlusPlus):
    """smp's U-Net++ (Zhou et al. 2018) with ``forward_features`` and a helpful shape check."""

    def __init__(
        self, encoder_name: str = "resnet34", encoder_weights: str | None = None, **kwargs
    ) -> None:
        super().__init__(
            encoder_name=encoder_name, encoder_weights=encoder_weights, classes=1, **kwargs
        )
        self.decoder_feature_channels = int(self.segmentation_head[0].in_channels)
        self.encoder_name = encoder_name

    def check_input_shape(self, x: torch.Tensor) -> None:
        check_input_shape(x, f"unetpp ({self.encoder_name} encoder)", self.encoder.output_stride)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits (B, 1, H, W), last decoder feature map (B, C, H, W))."""
        self.check_input_shape(x)
        features = self.decoder(self.encoder(x))
        return self.segmentation_head(features), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


def normalise_encoder_weights(encoder_weights: str | None) -> str | None:
    """Map the bash-friendly spellings of "no pretrained weights" ("none", "", "null") to None."""
    if encoder_weights is None or str(encoder_weights).lower() in ("none", "", "null", "false"):
        return None
    return str(encoder_weights)


def _build_unetpp(
    encoder: str,
    encoder_weights: str | None,
    image_size: int,
    swin_pretrained_path: str | None,
    **kwargs,
) -> nn.Module:
    _check_smp_encoder(encoder)
    model = UnetPlusPlus(encoder_name=encoder, encoder_weights=encoder_weights, **kwargs)
    _check_image_size(model, image_size, "unetpp")
    return model


def _build_attention_unet(
    encoder: str,
    encoder_weights: str | None,
    image_size: int,
    swin_pretrained_path: str | None,
    **kwargs,
) -> nn.Module:
    from models.attention_unet import AttentionUNet

    _check_smp_encoder(encoder)
    model = AttentionUNet(encoder_name=encoder, encoder_weights=encoder_weights, **kwargs)
    _check_image_size(model, image_size, "attentionunet")
    return model


def _build_swin_unet(
    encoder: str,
    encoder_weights: str | None,
    image_size: int,
    swin_pretrained_path: str | None,
    **kwargs,
) -> nn.Module:
    from models.swin_unet import SwinUNet
    from models.swin_unet_utils import load_swin_pretrained

    # The encoder is always Swin-T; `encoder` (shared flag, resnet34 for the CNNs) is not used.
    # ImageNet weights for Swin come from the official checkpoint file, not from smp/timm.
    if encoder_weights is None:
        if swin_pretrained_path:
            print(
                f"swinunet: encoder_weights is none, so random init; "
                f"--swin_pretrained_path {swin_pretrained_path} is not loaded"
            )
        swin_pretrained_path = None
    else:
        if not swin_pretrained_path:
            raise ValueError(
                "swinunet with encoder_weights='imagenet' needs --swin_pretrained_path, the "
                "official Swin-T checkpoint swin_tiny_patch4_window7_224_22k.pth; pass "
                "encoder_weights none for a random init"
            )
        # Fail before the model is built (and long before training starts).
        if not os.path.isfile(swin_pretrained_path):
            raise FileNotFoundError(
                f"--swin_pretrained_path {swin_pretrained_path!r} does not exist; expected the "
                f"official Swin-T checkpoint swin_tiny_patch4_window7_224_22k.pth"
            )
    model = SwinUNet(image_size=image_size, **kwargs)
    if swin_pretrained_path:
        load_swin_pretrained(model, swin_pretrained_path)
    return model


def _check_image_size(model: nn.Module, image_size: int, name: str) -> None:
    """Reject an --image_size the CNN cannot take at build time, not at the first batch."""
    check_input_shape(torch.empty(0, 3, image_size, image_size), name, model.encoder.output_stride)


def _check_smp_encoder(encoder: str) -> None:
    names = smp.encoders.get_encoder_names()
    if not encoder.startswith("tu-") and encoder not in names:
        raise ValueError(
            f"unknown smp encoder {encoder!r}; use one of smp's encoders (e.g. resnet18, "
            f"resnet34, resnet50, efficientnet-b0, mit_b0; full list: "
            f"segmentation_models_pytorch.encoders.get_encoder_names()) or 'tu-<timm name>'"
        )


SEG_MODELS: dict[str, Callable[..., nn.Module]] = {
    "unetpp": _build_unetpp,
    "attentionunet": _build_attention_unet,
    "swinunet": _build_swin_unet,
}


def create_seg_model(
    name: str,
    encoder: str = "resnet34",
    encoder_weights: str | None = "imagenet",
    image_size: int = 224,
    swin_pretrained_path: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build the segmentation network ``name`` (a key of SEG_MODELS or an acronym UP/AU/SU).

    Args:
        name: ``unetpp``, ``attentionunet`` or ``swinunet`` (case-insensitive), or an acronym.
        encoder: smp encoder for the CNNs (ResNet34 in the paper); Swin-UNet always uses Swin-T.
        encoder_weights: "imagenet" or None / "none" (random init, every model). For Swin-UNet
            "imagenet" means: load ``swin_pretrained_path``.
        image_size: input resolution; Swin-UNet is built for exactly this size (H = W).
        swin_pretrained_path: official ``swin_tiny_patch4_window7_224_22k.pth``; only read by
            ``swinunet``, which errors if it is missing.
        **kwargs: passed to the model class (e.g. ``decoder_channels`` for the CNNs,
            ``decoder_depths`` / ``drop_path_rate`` for Swin-UNet).
    """
    key = str(name).lower()
    by_acronym = {v.lower(): k for k, v in SEG_MODEL_ACRONYMS.items()}
    key = by_acronym.get(key, key)
    if key not in SEG_MODELS:
        valid = ", ".join(f"{k} ({SEG_MODEL_ACRONYMS[k]})" for k in SEG_MODELS)
        raise ValueError(f"unknown segmentation model {name!r}; valid names: {valid}")
    return SEG_MODELS[key](
        encoder=encoder,
        encoder_weights=normalise_encoder_weights(encoder_weights),
        image_size=int(image_size),
        swin_pretrained_path=swin_pretrained_path,
        **kwargs,
    )
