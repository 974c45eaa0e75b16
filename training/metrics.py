"""Per-image segmentation metrics at threshold 0.5 (docs/METHOD.md §4.6).

Dice, Jaccard, soft Dice, pixel accuracy and F1 are computed per image and reported as
mean +- std over images (`summarize`).

- F1 is the harmonic mean of the pixel precision and recall of each image. For binary
  masks it equals Dice (2 TP / (2 TP + FP + FN) either way); it is computed separately so
  the identity is checked by a test. Per image, not per batch: a batch-level F1 weights
  large lesions more and depends on the batch size.
- Empty masks are defined: prediction and ground truth both empty score 1 (Dice, Jaccard,
  F1), exactly one of them empty scores 0.
- Soft Dice is `training.losses.soft_dice_per_sample` on the probabilities (no threshold),
  the quantity the DiceCE loss optimises. Having no threshold, it is 1 on an empty ground
  truth only if every probability is exactly 0 (sigmoid never is): the skin-lesion and
  polyp test sets of the paper have a lesion in every image.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from training.losses import soft_dice_per_sample

METRICS = ("dice", "jaccard", "soft_dice", "pixel_accuracy", "f1")


@torch.no_grad()
def segmentation_metrics(
    pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5, from_logits: bool = True
) -> dict[str, torch.Tensor]:
    """Metrics of each image: dict name (METRICS) -> float32 tensor (B,).

    pred: logits (from_logits=True) or probabilities, (B, 1, H, W) or (B, H, W); a pixel is
    foreground when its probability is > threshold (as the pseudo-labels 1[p > 0.5]).
    target: {0, 1} masks of the same size (any dtype; > 0.5 is foreground).
    """
    if pred.dim() == 0 or pred.shape[0] != target.shape[0] or pred[0].numel() != target[0].numel():
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} do not match "
            "(same batch size and number of pixels per image expected)"
        )
    b = pred.shape[0]
    probs = torch.sigmoid(pred.float()) if from_logits else pred.float()
    p = probs.reshape(b, -1)
    t = target.reshape(b, -1).float() > 0.5
    hard = p > threshold
    # Counts in float64: exact for any image size, and the ratios below lose nothing.
    tp = (hard & t).sum(1).double()
    fp = (hard & ~t).sum(1).double()
    fn = (~hard & t).sum(1).double()
    n_pixels = p.shape[1]
    one = torch.ones_like(tp)
    both_empty = (tp + fp + fn) == 0  # no foreground predicted nor present

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(both_empty, one, num / torch.where(den > 0, den, one))

    n_pred, n_true = tp + fp, tp + fn
    precision = tp / torch.where(n_pred > 0, n_pred, one)  # 0 when nothing predicted
    recall = tp / torch.where(n_true > 0, n_true, one)  # 0 when nothing to find
    pr = precision + recall
    f1 = torch.where(both_empty, one, 2 * precision * recall / torch.where(pr > 0, pr, one))
    out = {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": ratio(tp, tp + fp + fn),
        "soft_dice": soft_dice_per_sample(p, t.float()).double(),
        "pixel_accuracy": 1.0 - (fp + fn) / n_pixels,
        "f1": f1,
    }
    return {k: v.float() for k, v in out.items()}


def summarize(per_image: Mapping[str, np.ndarray]) -> dict[str, dict[str, float | int]]:
    """{name: {"mean", "std", "n"}} over images; std is the population standard deviation
    (numpy's default, ddof 0) of the per-image values, as the paper's "mean +- std"."""
    out: dict[str, dict[str, float | int]] = {}
    for name, values in per_image.items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size == 0:
            raise ValueError(f"summarize: metric {name!r} has no values")
        out[name] = {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}
    return out
