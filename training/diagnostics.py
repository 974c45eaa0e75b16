"""Diagnostics of the quality-guided mechanism, per epoch (docs/METHOD.md §6.1).

When the unlabeled CSV also has a `mask_path` column (held-out masks of D_U, never used for
training), each epoch scores every unlabeled image once, without augmentation:

- the pseudo-label the method would train on (the EMA teacher's hard prediction; CPS: the
  other network's; otherwise the student's), its true Dice against the held-out mask, and
  g_phi's predicted quality q of it (when the method loads g_phi);
- Pearson and Spearman correlation between q and the true Dice (does g_phi rank
  pseudo-labels well?), the fraction kept by the threshold tau, and the true Dice of kept
  and dropped pseudo-labels;
- the student's own true Dice on D_U.

The pass runs in eval mode with every RNG state restored afterwards, so a run with held-out
masks trains exactly as one without (tested). `plot_diagnostics` draws them per epoch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from data.augment import normalize_tensor
from data.io import load_heldout_masks, load_labeled_arrays
from data.seg_datasets import LabeledSegDataset
from training.distributed import unwrap_ddp
from training.metrics import segmentation_metrics

DIAGNOSTIC_PREFIX = "diag_"


def heldout_dataset(
    unlabeled_csv: str | Path | None, image_size: int, num_threads: int
) -> LabeledSegDataset | None:
    """D_U's images with their held-out masks, unaugmented; None when the CSV has none."""
    split = load_heldout_masks(unlabeled_csv) if unlabeled_csv else None
    if split is None:
        return None
    images, masks = load_labeled_arrays(split, image_size, num_threads, desc="held-out masks")
    return LabeledSegDataset.from_arrays(images, masks, augment=False)


def pseudo_label_network(method: Any) -> nn.Module:
    """The network whose hard predictions the method trains on."""
    if getattr(method, "teacher", None) is not None:
        return method.teacher.model
    if len(method.networks) > 1:
        return unwrap_ddp(method.networks[1])
    return method.eval_model()


def _dice(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return segmentation_metrics(probs, masks, from_logits=False)["dice"]


def _corr(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return math.nan  # undefined for constant inputs
    if kind == "pearson":
        return float(np.corrcoef(a, b)[0, 1])
    return float(stats.spearmanr(a, b).statistic)


@torch.no_grad()
def mechanism_diagnostics(
    method: Any,
    dataset: LabeledSegDataset,
    device: torch.device,
    batch_size: int = 16,
) -> dict[str, float]:
    """One pass over D_U with held-out masks; the `diag_*` columns of summary.csv."""
    student, labeler = method.eval_model(), pseudo_label_network(method)
    quality, args = method.quality, method.args
    nets = {id(n): n for n in (student, labeler)}.values()
    modes = [n.training for n in nets]
    dice_pl, dice_student, q_all = [], [], []
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for n in nets:
            n.eval()
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            x = normalize_tensor(torch.stack([it["image"] for it in items]).to(device))
            y = torch.stack([it["mask"] for it in items]).to(device).float()
            pl = (torch.sigmoid(labeler(x).float()) > 0.5).float()
            own = torch.sigmoid(student(x).float()) if labeler is not student else pl
            dice_pl.append(_dice(pl, y))
            dice_student.append(_dice(own, y))
            if quality is not None:
                q_all.append(quality(x, pl))
    for n, mode in zip(nets, modes, strict=True):
        n.train(mode)
    d_pl = torch.cat(dice_pl).cpu().numpy().astype(np.float64)
    out = {
        "pl_dice": float(d_pl.mean()),
        "student_dice": float(torch.cat(dice_student).float().mean()),
    }
    if q_all:
        q = torch.cat(q_all).float().cpu().numpy().astype(np.float64)
        kept = q >= getattr(args, "quality_threshold", 0.5)
        out.update(
            q_mean=float(q.mean()),
            q_pearson=_corr(q, d_pl, "pearson"),
            q_spearman=_corr(q, d_pl, "spearman"),
            kept_fraction=float(kept.mean()),
            kept_dice=float(d_pl[kept].mean()) if kept.any() else math.nan,
            dropped_dice=float(d_pl[~kept].mean()) if (~kept).any() else math.nan,
        )
    return {f"{DIAGNOSTIC_PREFIX}{k}": v for k, v in out.items()}


def plot_diagnostics(summary_csv: str | Path, out_png: str | Path) -> Path | None:
    """Per-epoch plot of the `diag_*` columns of a run's summary.csv (None if it has none)."""
    df = pd.read_csv(summary_csv)
    columns = [c for c in df.columns if c.startswith(DIAGNOSTIC_PREFIX)]
    if not columns:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on compute nodes
    import matplotlib.pyplot as plt

    correlations = [c for c in columns if c.endswith(("pearson", "spearman"))]
    scores = [c for c in columns if c not in correlations]
    fig, axes = plt.subplots(1, 2 if correlations else 1, figsize=(10, 4), squeeze=False)
    epochs = df["epoch"] + 1
    for c in scores:
        axes[0, 0].plot(epochs, df[c], marker="o", ms=3, label=c[len(DIAGNOSTIC_PREFIX) :])
    if "val_dice" in df:
        axes[0, 0].plot(epochs, df["val_dice"], "k--", label="val_dice (D_L val)")
    axes[0, 0].set(xlabel="epoch", ylabel="Dice / fraction", title="pseudo-labels on D_U")
    axes[0, 0].legend(fontsize=7)
    if correlations:
        for c in correlations:
            axes[0, 1].plot(epochs, df[c], marker="o", ms=3, label=c[len(DIAGNOSTIC_PREFIX) :])
        axes[0, 1].set(xlabel="epoch", ylabel="correlation", title="q vs true Dice")
        axes[0, 1].axhline(0.0, color="grey", lw=0.5)
        axes[0, 1].legend(fontsize=7)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
