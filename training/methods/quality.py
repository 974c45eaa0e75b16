"""The frozen quality predictor in Phase 2, and the one quality weighting all -QW methods use.

- `QualityScorer` wraps g_phi (loaded from any Phase 1 checkpoint, frozen, eval mode):
  q = g_phi(x (+) y). With `grad=True` (QAR, Eqn 5-6) gradients flow through g_phi to the
  mask argument, i.e. to f_theta's soft prediction, while g_phi's own parameters never
  receive gradients. When f_theta trains at another image size than g_phi was trained
  for, images and soft masks are resized bilinearly to g_phi's size (differentiable), hard
  masks by nearest neighbour (they stay in {0, 1}, as the loaders resize masks) — only if
  asked (`--mq_resize`), otherwise that is an error before training (docs/METHOD.md §5).
- `quality_weights`: w_j = q_j^T * 1[q_j >= tau] (Eqn 7, T = 2, tau = 0.5), and
  `weighted_mean`: sum_j w_j l_j / sum_j w_j, 0 when every weight is 0 (Eqn 8).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from data.io import IMAGENET_MEAN, IMAGENET_STD
from models.quality_predictor import load_quality_predictor
from training.acceleration import maybe_compile
from training.losses import weighted_sample_mean


def add_quality_weight_arguments(parser: argparse.ArgumentParser) -> None:
    """tau and T of the quality weights (Eqn 7), shared by PL-QW and every -QW baseline."""
    parser.add_argument("--quality_threshold", type=float, default=0.5, help="tau (Eqn 7)")
    parser.add_argument("--quality_temperature", type=float, default=2.0, help="T (Eqn 7)")


def quality_weights(
    q: torch.Tensor, threshold: float = 0.5, temperature: float = 2.0
) -> torch.Tensor:
    """Eqn 7: w = q^T * 1[q >= tau] (no gradient flows through the weights)."""
    q = q.detach().float()
    return q.pow(temperature) * (q >= threshold).float()


def weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eqn 8: sum_j w_j l_j / sum_j w_j, exactly 0 (graph-connected) when all w_j are 0."""
    return weighted_sample_mean(per_sample, weights)


def weight_logs(q: torch.Tensor, w: torch.Tensor, prefix: str = "") -> dict[str, torch.Tensor]:
    """Mean predicted quality and the fraction of samples kept by the threshold."""
    return {
        f"{prefix}mean_quality": q.detach().float().mean(),
        f"{prefix}kept_fraction": (w > 0).float().mean(),
    }


def check_normalisation(stored: dict | None, checkpoint: str | Path) -> None:
    """g_phi must see images normalised as it was trained: Phase 2 normalises with the
    ImageNet statistics (data.augment.normalize_tensor), so the checkpoint must say so."""
    if stored is None:
        return  # checkpoints written before the field existed were all ImageNet-normalised
    for key, expected in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        got = [float(v) for v in stored.get(key, [])]
        if len(got) != len(expected) or any(
            abs(a - b) > 1e-6 for a, b in zip(got, expected, strict=True)
        ):
            raise ValueError(
                f"g_phi ({checkpoint}) was trained on images normalised with {key} {got}, "
                f"but Phase 2 normalises with the ImageNet {key} {list(expected)}: retrain "
                "g_phi with this project's train_mq.py, or normalise its inputs the same way"
            )


class QualityScorer:
    """Frozen g_phi for Phase 2: q = g_phi(x (+) y) for normalised images and masks."""

    def __init__(
        self,
        checkpoint: str | Path,
        device: torch.device,
        image_size: int,
        allow_resize: bool = False,
        compile: str = "off",
    ) -> None:
        self.model, self.meta = load_quality_predictor(checkpoint, map_location=device)
        # Channels-last as f_theta's inputs; `compiled` is set only when torch.compile is on,
        # `model` stays the bare module (its parameters are what the tests compare).
        self.model = self.model.to(memory_format=torch.channels_last)
        compiled = maybe_compile(self.model, compile, device, "frozen g_phi")
        self.compiled = None if compiled is self.model else compiled
        self.checkpoint = Path(checkpoint)
        self.size = int(self.meta["image_size"])
        if self.size != image_size and not allow_resize:
            raise ValueError(
                f"g_phi ({checkpoint}) was trained at {self.size} px but f_theta trains at "
                f"{image_size} px (--image_size); train g_phi at {image_size} px, or pass "
                f"--mq_resize to resize images and masks to {self.size} px for g_phi"
            )
        self.resize = self.size != image_size
        check_normalisation(self.meta.get("normalization"), checkpoint)

    def __call__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        grad: bool = False,
        hard: bool | None = None,
    ) -> torch.Tensor:
        """Predicted quality (B,) of `masks` (B, 1, H, W) in [0, 1] (soft or hard).

        grad=False: no graph at all. grad=True: differentiable w.r.t. the inputs (QAR).
        hard: whether `masks` are {0, 1} labels, resized by nearest neighbour under
        --mq_resize; soft ones are resized bilinearly. Default `not grad`: the one
        differentiable use scores QAR's soft prediction, every other one hard pseudo-labels.
        """
        if self.resize:
            hard = not grad if hard is None else hard
            masks = self.resize_masks(masks, hard)
            size = (self.size, self.size)
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        x = torch.cat([images, masks.to(images.dtype)], dim=1)
        x = x.contiguous(memory_format=torch.channels_last)
        net = self.model if self.compiled is None else self.compiled
        if grad:
            return net(x).float()
        with torch.no_grad():
            return net(x).float()

    def resize_masks(self, masks: torch.Tensor, hard: bool) -> torch.Tensor:
        """`masks` at g_phi's size: nearest neighbour for hard labels (a bilinear resize
        would give g_phi soft edges it never saw on a hard mask), bilinear for soft ones."""
        size = (self.size, self.size)
        if hard:
            return F.interpolate(masks, size=size, mode="nearest")
        return F.interpolate(masks, size=size, mode="bilinear", align_corners=False)

    def parameters_snapshot(self) -> list[torch.Tensor]:
        """A copy of g_phi's parameters (tests check they stay bit-identical)."""
        return [p.detach().clone() for p in self.model.parameters()]
