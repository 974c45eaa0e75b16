"""Variable Quality Mask generator (docs/METHOD.md §2.1).

A VQM is a corrupted ground-truth mask y~ = h(y; xi) with its target q = DSC(y, y~). Each
draw first picks one of seven categories with configurable probabilities (the paper's
mix by default), then an operation within it:

| category     | what                                                                   |
|--------------|------------------------------------------------------------------------|
| identity     | mask unchanged (q = 1)                                                 |
| single       | one op of the single pool, drawn by weight                             |
| chained      | 2 or 3 distinct single-pool ops in sequence (blob pool excluded)       |
| cross_image  | the GT of another image among the 20% closest in mask area (not itself)|
| heavy        | one op of the heavy pool, by weight                                    |
| catastrophic | one op of the catastrophic pool, by weight                             |
| blob         | uniformly one of the blob approximations                               |

Chained ops are drawn uniformly (without replacement) from the chainable pool, as the
release draws them; the single, heavy and catastrophic pools are drawn by weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from data.corruption_ops import (
    BLOB_POOL,
    CATASTROPHIC_POOL,
    CHAINABLE_POOL,
    HEAVY_POOL,
    IDENTITY,
    SINGLE_POOL,
    CorruptionOp,
)

CATEGORIES: tuple[str, ...] = (
    "identity",
    "single",
    "chained",
    "cross_image",
    "heavy",
    "catastrophic",
    "blob",
)

# The paper's mix (docs/METHOD.md §2.1; not the release's library defaults, which differ).
PAPER_CATEGORY_PROBS: dict[str, float] = {
    "identity": 0.20,
    "single": 0.28,
    "chained": 0.18,
    "cross_image": 0.10,
    "heavy": 0.12,
    "catastrophic": 0.05,
    "blob": 0.07,
}

# Weak-model predictions (data/weak_model_corruption.py) are reported under this name.
WEAK_MODEL_CATEGORY = "weak_model"


def dice_score(a: np.ndarray, b: np.ndarray) -> float:
    """DSC(a, b) = 2|a AND b| / (|a| + |b|) of two {0, 1} masks; two empty masks score 1."""
    total = cv2.countNonZero(a) + cv2.countNonZero(b)
    if total == 0:
        return 1.0
    return 2.0 * cv2.countNonZero(cv2.bitwise_and(a, b)) / total


@dataclass
class VQMConfig:
    """Category probabilities and sampling settings of the generator."""

    category_probs: dict[str, float] = field(default_factory=lambda: dict(PAPER_CATEGORY_PROBS))
    chain_length: tuple[int, int] = (2, 3)
    # Cross-image masks come from this fraction of the reference masks closest in area.
    cross_image_fraction: float = 0.2
    # Scale pixel parameters of the ops with the mask size (docs/METHOD.md §2.6).
    scale_with_size: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.category_probs) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown VQM categories {unknown}; valid: {list(CATEGORIES)}")
        probs = {c: float(self.category_probs.get(c, 0.0)) for c in CATEGORIES}
        negative = {c: p for c, p in probs.items() if p < 0}
        if negative:
            raise ValueError(f"VQM category probabilities must be >= 0, got {negative}")
        total = sum(probs.values())
        if abs(total - 1.0) > 1e-6:
            listing = ", ".join(f"{c}={p:g}" for c, p in probs.items())
            raise ValueError(
                f"VQM category probabilities must sum to 1, got {total:.6g} ({listing})"
            )
        self.category_probs = probs
        lo, hi = self.chain_length
        if not 1 <= lo <= hi <= len(CHAINABLE_POOL):
            raise ValueError(f"chain_length must satisfy 1 <= lo <= hi, got {self.chain_length}")
        if not 0 < self.cross_image_fraction <= 1:
            raise ValueError(
                f"cross_image_fraction must be in (0, 1], got {self.cross_image_fraction}"
            )

    def to_dict(self) -> dict:
        return {
            "category_probs": dict(self.category_probs),
            "chain_length": list(self.chain_length),
            "cross_image_fraction": self.cross_image_fraction,
            "scale_with_size": self.scale_with_size,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> VQMConfig:
        return cls(
            category_probs=dict(d["category_probs"]),
            chain_length=tuple(d.get("chain_length", (2, 3))),
            cross_image_fraction=float(d.get("cross_image_fraction", 0.2)),
            scale_with_size=bool(d.get("scale_with_size", True)),
        )


@dataclass(frozen=True)
class VQMSample:
    """One corrupted mask, its target Dice against the GT, and how it was made."""

    mask: np.ndarray
    quality: float
    category: str
    op_name: str


class _WeightedPool:
    """Draw ops from a pool by weight with one uniform draw (cheaper than rng.choice)."""

    def __init__(self, ops: tuple[CorruptionOp, ...], weighted: bool = True) -> None:
        self.ops = ops
        weights = np.array([op.weight if weighted else 1.0 for op in ops], dtype=np.float64)
        self.cumulative = np.cumsum(weights / weights.sum())

    def draw(self, rng: np.random.Generator) -> CorruptionOp:
        i = int(np.searchsorted(self.cumulative, rng.random(), side="right"))
        return self.ops[min(i, len(self.ops) - 1)]


class VQMGenerator:
    """Draw VQMs of a GT mask; cross-image draws use a set of reference GT masks.

    Args:
        config: category probabilities and settings (the paper's by default).
        reference_masks: (N, H, W) {0, 1} GT masks of the split, for cross-image swaps
            (needed when the cross-image probability is positive).
    """

    def __init__(
        self, config: VQMConfig | None = None, reference_masks: np.ndarray | None = None
    ) -> None:
        self.config = config or VQMConfig()
        probs = np.array([self.config.category_probs[c] for c in CATEGORIES])
        self._category_cumulative = np.cumsum(probs)
        self._pools = {
            "single": _WeightedPool(SINGLE_POOL),
            "heavy": _WeightedPool(HEAVY_POOL),
            "catastrophic": _WeightedPool(CATASTROPHIC_POOL),
            "blob": _WeightedPool(BLOB_POOL, weighted=False),
        }
        self.reference_masks = reference_masks
        n_ref = 0 if reference_masks is None else len(reference_masks)
        if self.config.category_probs["cross_image"] > 0 and n_ref < 2:
            raise ValueError(
                f"cross-image VQMs need at least 2 reference masks, got {n_ref}; "
                "set the cross-image probability to 0 for such a small split"
            )
        if reference_masks is not None:
            areas = reference_masks.reshape(len(reference_masks), -1).sum(axis=1)
            self._areas = areas.astype(np.int64)
            self._area_order = np.argsort(self._areas, kind="stable")
            self._sorted_areas = self._areas[self._area_order]
            self._k_nearest = max(1, int(len(reference_masks) * self.config.cross_image_fraction))

    # ----------------------------------------------------------------------------------

    def draw_category(self, rng: np.random.Generator) -> str:
        i = int(np.searchsorted(self._category_cumulative, rng.random(), side="right"))
        return CATEGORIES[min(i, len(CATEGORIES) - 1)]

    def cross_image_candidates(self, area: int, exclude: int | None) -> np.ndarray:
        """Indices of the reference masks closest in area to `area` (never `exclude`)."""
        k = self._k_nearest
        n = len(self._areas)
        pos = int(np.searchsorted(self._sorted_areas, area))
        # The k nearest (plus one possibly excluded) lie within k + 1 of the insertion point.
        window = self._area_order[max(0, pos - k - 1) : min(n, pos + k + 1)]
        if exclude is not None:
            window = window[window != exclude]
        diffs = np.abs(self._areas[window] - area)
        nearest = np.argsort(diffs, kind="stable")[:k]
        return window[nearest]

    def _cross_image(
        self, gt: np.ndarray, rng: np.random.Generator, index: int | None
    ) -> tuple[np.ndarray, str]:
        area = cv2.countNonZero(gt)
        candidates = self.cross_image_candidates(area, index)
        j = int(candidates[rng.integers(candidates.size)])
        other = self.reference_masks[j]
        if other.shape != gt.shape:
            other = cv2.resize(other, gt.shape[::-1], interpolation=cv2.INTER_NEAREST)
        else:
            other = other.copy()
        return other, f"cross_image:{j}"

    def _chain(self, gt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        lo, hi = self.config.chain_length
        length = int(rng.integers(lo, hi + 1))
        picks = rng.choice(len(CHAINABLE_POOL), size=length, replace=False)
        out = gt
        names = []
        for i in picks:
            op = CHAINABLE_POOL[int(i)]
            out = op(out, rng, self.config.scale_with_size)
            names.append(op.name)
        return out, "chain:" + "+".join(names)

    def sample(
        self,
        gt: np.ndarray,
        rng: np.random.Generator,
        index: int | None = None,
        category: str | None = None,
    ) -> VQMSample:
        """One VQM of `gt` ({0, 1} uint8, H x W).

        Args:
            gt: the ground-truth mask (possibly augmented).
            rng: the sample's generator (data.samplers.sample_rng).
            index: position of `gt`'s image among the reference masks, never used as its
                own cross-image partner (None: no exclusion).
            category: force a category (tests, per-category benchmarks).
        """
        category = category or self.draw_category(rng)
        scale = self.config.scale_with_size
        if category == "identity":
            mask, name = IDENTITY(gt, rng), "identity"
        elif category == "chained":
            mask, name = self._chain(gt, rng)
        elif category == "cross_image":
            if self.reference_masks is None:
                raise ValueError("cross-image VQMs need reference masks")
            mask, name = self._cross_image(gt, rng, index)
        elif category in self._pools:
            op = self._pools[category].draw(rng)
            mask, name = op(gt, rng, scale), op.name
        else:
            raise ValueError(f"unknown VQM category {category!r}; valid: {list(CATEGORIES)}")
        return VQMSample(mask, dice_score(gt, mask), category, name)
