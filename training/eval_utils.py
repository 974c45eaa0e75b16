"""Validation and test of a segmentation network (docs/METHOD.md §4.6): per-image metrics
at threshold 0.5, summarised as mean +- std."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from data.augment import normalize_tensor
from training.distributed import gather_by_index
from training.metrics import segmentation_metrics
from training.precision import autocast


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    threshold: float = 0.5,
) -> dict[str, np.ndarray]:
    """Per-image metrics of `model` on a loader of labeled items (data.seg_datasets):
    dict name -> float array, one value per image, ordered by image index.

    The model runs in eval mode without gradients; its previous mode is restored, also on
    error. Images arrive as uint8 and are normalised here, on `device`. Under
    torch.distributed every rank evaluates its shard, the per-image metrics of all ranks
    are gathered, and the duplicates a padding sampler adds (same "index") are dropped, so
    every rank returns the same full arrays.
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    seen = 0
    try:
        for batch in loader:
            x = normalize_tensor(batch["image"].to(device, non_blocking=True))
            y = batch["mask"].to(device, non_blocking=True)
            with autocast(device, autocast_dtype):
                logits = model(x)
            for name, values in segmentation_metrics(logits, y, threshold).items():
                parts[name].append(values.cpu().numpy())
            if "index" in batch:
                parts["index"].append(np.asarray(batch["index"]).reshape(-1))
            elif _distributed():
                raise ValueError(
                    "evaluate_segmentation under torch.distributed needs batch['index'] to "
                    "merge the ranks' shards"
                )
            else:  # position in the loader (single process; no padding to undo)
                parts["index"].append(np.arange(seen, seen + len(x)))
            seen += len(x)
    finally:
        model.train(was_training)

    local = {k: np.concatenate(v) for k, v in parts.items()}
    try:
        return gather_by_index(local)
    except ValueError:
        raise ValueError("evaluate_segmentation: the loader yielded no batches") from None


def format_summary(summary: Mapping[str, Mapping[str, float]], digits: int = 3) -> str:
    """One line from `training.metrics.summarize`: 'dice 0.812 +- 0.094, jaccard ...'."""
    return ", ".join(
        f"{name} {s['mean']:.{digits}f} +- {s['std']:.{digits}f}" for name, s in summary.items()
    )
