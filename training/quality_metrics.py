"""Metrics of g_phi's predicted quality against true Dice (docs/METHOD.md §3.4)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def _correlation(fn, a: np.ndarray, b: np.ndarray) -> float:
    """A correlation coefficient, NaN when either side is constant (undefined)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(fn(a, b)[0])


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE, MSE, Pearson r and Spearman rho of predictions vs targets, plus the MAE of the
    best constant predictor (the targets' median) for reference: a g_phi that beats it has
    learned something beyond the target distribution."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    err = pred - true
    return {
        "n": len(true),
        "mae": float(np.mean(np.abs(err))),
        "mse": float(np.mean(err**2)),
        "pearson": _correlation(stats.pearsonr, pred, true),
        "spearman": _correlation(stats.spearmanr, pred, true),
        "best_constant_mae": float(np.mean(np.abs(true - np.median(true)))),
        "mean_pred": float(pred.mean()),
        "mean_true": float(true.mean()),
    }


def per_category(
    pred: np.ndarray, true: np.ndarray, categories: np.ndarray, names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """n, mean true and predicted quality, and MAE for each sample category present."""
    out = {}
    for cid, name in enumerate(names):
        sel = categories == cid
        if not sel.any():
            continue
        out[name] = {
            "n": int(sel.sum()),
            "mean_true": float(true[sel].mean()),
            "mean_pred": float(pred[sel].mean()),
            "mae": float(np.abs(pred[sel] - true[sel]).mean()),
        }
    return out


def finite_or_none(d: dict) -> dict:
    """JSON-safe copy: NaN/inf become None (JSON has no NaN)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = finite_or_none(v)
        elif isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        else:
            out[k] = v
    return out
