"""Attention U-Net (Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the Pancreas").

One of the paper's three f_theta (docs/METHOD.md §4: ResNet34 encoder with ImageNet weights,
attention gates on the skips). The encoder is any smp encoder; the decoder is smp's U-Net
decoder layout (nearest upsampling, concat, two 3x3 conv-BN-ReLU) with each skip passed
through an additive attention gate whose gating signal is the coarser decoder feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import initialization as smp_init
from segmentation_models_pytorch.base.modules import Conv2dReLU
from torch import nn

from models.common import SegmentationNetwork, check_input_shape
from models.pretrained import build_smp_encoder


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, Eqns 1-2).

    alpha = sigmoid(psi(relu(W_x x + W_g g))), output x * alpha. ``x`` is the encoder skip,
    ``g`` the coarser decoder feature; W_g g is resampled (bilinear) to the skip's resolution,
    which is the same as resampling g first since a 1x1 conv commutes with interpolation, but
    runs the projection on 4x fewer pixels.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int) -> None:
        super().__init__()
        # As in the paper: W_x without bias (b_g covers it), W_g and psi with bias.
        self.w_x = nn.Conv2d(skip_channels, inter_channels, kernel_size=1, bias=False)
        self.w_g = nn.Conv2d(gate_channels, inter_channels, kernel_size=1, bias=True)
        self.psi = nn.Conv2d(inter_channels, 1, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (gated skip, attention coefficients alpha in (0, 1) of shape (B, 1, h, w))."""
        g_proj = self.w_g(g)
        if g_proj.shape[-2:] != x.shape[-2:]:
            g_proj = F.interpolate(g_proj, size=x.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(self.w_x(x) + g_proj)))
        return x * alpha, alpha


class AttentionDecoderBlock(nn.Module):
    """Upsample x2, gate the skip with the (pre-upsampling) decoder feature, concat, 2 convs."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.gate = (
            AttentionGate(skip_channels, in_channels, max(skip_channels // 2, 1))
            if skip_channels > 0
            else None
        )
        self.conv1 = Conv2dReLU(in_channels + skip_channels, out_channels, 3, padding=1)
        self.conv2 = Conv2dReLU(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None and self.gate is not None:
            skip, _ = self.gate(skip, x)
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = torch.cat([x, skip], dim=1)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv2(self.conv1(x))


class AttentionUNet(SegmentationNetwork):
    """Attention U-Net on an smp encoder; logits (B, 1, H, W).

    Args:
        encoder_name: any smp encoder name (``resnet34`` in the paper).
        encoder_weights: "imagenet", None, or a local weights file.
        decoder_channels: one entry per decoder block (5 for depth-5 encoders), smp's default.
    """

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        depth = len(decoder_channels)
        self.encoder = build_smp_encoder(encoder_name, encoder_weights, in_channels=3, depth=depth)
        # features[0] is the input itself (full resolution), as in smp's U-Net it is not a skip.
        enc_channels = list(self.encoder.out_channels[1:])[::-1]
        head_channels, skip_channels = enc_channels[0], [*enc_channels[1:], 0]
        in_channels = [head_channels, *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            AttentionDecoderBlock(i, s, o)
            for i, s, o in zip(in_channels, skip_channels, decoder_channels)
        )
        self.segmentation_head = nn.Conv2d(decoder_channels[-1], 1, kernel_size=3, padding=1)
        self.decoder_feature_channels = int(decoder_channels[-1])
        self.deepest_channels = int(self.encoder.out_channels[-1])
        self.encoder_name = encoder_name
        smp_init.initialize_decoder(self.blocks)
        smp_init.initialize_head(self.segmentation_head)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps, deepest first (the input itself is not a skip)."""
        check_input_shape(
            x, f"attentionunet ({self.encoder_name} encoder)", self.encoder.output_stride
        )
        return self.encoder(x)[1:][::-1]

    def deepest_feature(self, features: list[torch.Tensor]) -> torch.Tensor:
        return features[0]  # encode() lists the deepest first

    def decode(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits (B, 1, H, W), last decoder feature map (B, C, H, W))."""
        d, skips = features[0], features[1:]
        for i, block in enumerate(self.blocks):
            d = block(d, skips[i] if i < len(skips) else None)
        return self.segmentation_head(d), d
