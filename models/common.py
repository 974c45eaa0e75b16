"""What every segmentation network f_theta shares: the input-shape check and the
``forward_features`` convention (docs/METHOD.md §4).

Every f_theta takes an ImageNet-normalised batch (B, 3, H, W) and returns one-channel logits
(B, 1, H, W); the caller applies the sigmoid. ``forward_features(x)`` returns
``(logits, features)`` with ``features`` the last decoder feature map before the segmentation
head (the contrastive baselines' pixel InfoNCE reads it), ``decoder_feature_channels`` its
channel count.

Each network is an encoder and a decoder: ``encode(x)`` returns the feature maps the decoder
reads and ``decode(features)`` returns ``(logits, features)``. ``forward_perturbed`` uses the
split for UniMatch's feature perturbation (docs/METHOD.md §7.6) on every architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationNetwork(nn.Module):
    """Base of every f_theta: ``forward`` is ``forward_features``' logits, and
    ``forward_features`` is ``decode(encode(x))``."""

    decoder_feature_channels: int
    deepest_channels: int  # channels of `deepest_feature` (VerSemi's controller reads it)
    # How encode()'s feature maps hold their channels: "NCHW" (CNNs) or "NHWC" (Swin tokens).
    feature_layout: str = "NCHW"

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps that the decoder reads (checks the input's shape)."""
        raise NotImplementedError

    def decode(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits (B, 1, H, W), last decoder feature map (B, C, H, W))."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits (B, 1, H, W), last decoder feature map (B, C, H, W))."""
        return self.decode(self.encode(x))

    def deepest_feature(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The deepest of encode()'s maps, (B, deepest_channels, h, w) in NCHW."""
        deep = features[-1]
        return deep.permute(0, 3, 1, 2) if self.feature_layout == "NHWC" else deep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def forward_perturbed(
        self, x: torch.Tensor, start: int = 0, p: float = 0.5
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """UniMatch's feature perturbation in one forward: encode x once, decode its clean
        features and, stacked after them, the features of x[start:] through Dropout2d(p)
        (whole channels dropped; identity in eval mode). Returns (logits of x, logits of the
        perturbed stream for x[start:])."""
        n = len(x)
        joined = [torch.cat([f, self._drop_channels(f[start:], p)]) for f in self.encode(x)]
        logits = self.decode(joined)[0]
        return logits[:n], logits[n:]

    def _drop_channels(self, f: torch.Tensor, p: float) -> torch.Tensor:
        if self.feature_layout == "NHWC":
            return F.dropout2d(f.permute(0, 3, 1, 2), p, self.training).permute(0, 2, 3, 1)
        return F.dropout2d(f, p, self.training)


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
