"""U-Net++ (Zhou et al. 2018), one of the paper's three f_theta (docs/METHOD.md §4): smp's
model with one output channel, ``forward_features`` and a shape check that explains itself."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch

from models.common import SegmentationNetwork, check_input_shape
from models.pretrained import is_weights_file, load_encoder_file


class UnetPlusPlus(SegmentationNetwork, smp.UnetPlusPlus):
    """smp's U-Net++ on any smp encoder (``resnet34`` in the paper); logits (B, 1, H, W)."""

    def __init__(
        self, encoder_name: str = "resnet34", encoder_weights: str | None = None, **kwargs
    ) -> None:
        # a local file: build with no weights, then load it (models/pretrained.py)
        weights_file = encoder_weights if is_weights_file(encoder_weights) else None
        super().__init__(
            encoder_name=encoder_name,
            encoder_weights=None if weights_file else encoder_weights,
            classes=1,
            **kwargs,
        )
        if weights_file:
            load_encoder_file(self.encoder, encoder_name, weights_file)
        self.decoder_feature_channels = int(self.segmentation_head[0].in_channels)
        self.deepest_channels = int(self.encoder.out_channels[-1])
        self.encoder_name = encoder_name

    def check_input_shape(self, x: torch.Tensor) -> None:
        check_input_shape(x, f"unetpp ({self.encoder_name} encoder)", self.encoder.output_stride)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input_shape(x)
        return self.encoder(x)

    def decode(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        decoded = self.decoder(features)
        return self.segmentation_head(decoded), decoded
