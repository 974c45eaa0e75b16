"""The VQM generator: category mix, Dice targets, cross-image partners, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data.vqm_generator import (
    CATEGORIES,
    PAPER_CATEGORY_PROBS,
    VQMConfig,
    VQMGenerator,
    dice_score,
)
from tests.conftest import typical_mask


def reference_masks(n: int = 20, size: int = 64) -> np.ndarray:
    """Discs of distinct areas at varied places."""
    import cv2

    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cv2.circle(out[i], (10 + (i * 7) % 40, 12 + (i * 5) % 40), 4 + i, 1, -1)
    return out


def independent_dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else 2.0 * np.logical_and(a, b).sum() / denom


def test_config_must_sum_to_one_and_name_known_categories():
    with pytest.raises(ValueError, match="sum to 1"):
        VQMConfig(category_probs={**PAPER_CATEGORY_PROBS, "identity": 0.25})
    with pytest.raises(ValueError, match="unknown VQM categories"):
        VQMConfig(category_probs={"identity": 0.5, "typo": 0.5})
    with pytest.raises(ValueError, match=">= 0"):
        VQMConfig(category_probs={**PAPER_CATEGORY_PROBS, "identity": -0.1, "single": 0.58})
    assert VQMConfig().category_probs == PAPER_CATEGORY_PROBS


@pytest.mark.parametrize(
    "probs",
    [
        PAPER_CATEGORY_PROBS,
        {
            "identity": 0.1,
            "single": 0.1,
            "chained": 0.1,
            "cross_image": 0.4,
            "heavy": 0.1,
            "catastrophic": 0.1,
            "blob": 0.1,
        },
    ],
)
def test_category_frequencies_match_configured_probabilities(probs):
    gen = VQMGenerator(VQMConfig(category_probs=probs), reference_masks())
    rng = np.random.default_rng(0)
    n = 40_000
    draws = [gen.draw_category(rng) for _ in range(n)]
    for c in CATEGORIES:
        p = probs.get(c, 0.0)
        freq = draws.count(c) / n
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(freq - p) <= 5 * sigma + 1e-9, (c, freq, p)


def test_sampled_categories_follow_the_mix_end_to_end():
    masks = reference_masks()
    gen = VQMGenerator(VQMConfig(), masks)
    rng = np.random.default_rng(1)
    n = 6000
    cats = [gen.sample(masks[i % 20], rng, index=i % 20).category for i in range(n)]
    for c, p in PAPER_CATEGORY_PROBS.items():
        assert abs(cats.count(c) / n - p) <= 5 * math.sqrt(p * (1 - p) / n)


def test_targets_equal_dice_recomputed_independently():
    masks = reference_masks()
    gen = VQMGenerator(VQMConfig(), masks)
    rng = np.random.default_rng(2)
    gt = typical_mask(64)
    seen = set()
    for _ in range(700):
        s = gen.sample(gt, rng)
        seen.add(s.category)
        assert s.quality == pytest.approx(independent_dice(gt, s.mask), abs=1e-12)
        assert 0.0 <= s.quality <= 1.0
    assert seen == set(CATEGORIES)


def test_dice_known_answers():
    a = np.zeros((8, 8), np.uint8)
    b = a.copy()
    assert dice_score(a, b) == 1.0  # two empty masks agree
    a[:4] = 1
    assert dice_score(a, a) == 1.0
    b[4:] = 1
    assert dice_score(a, b) == 0.0
    assert dice_score(a, np.zeros_like(a)) == 0.0


def test_cross_image_partner_is_among_nearest_areas_and_never_itself():
    masks = reference_masks(n=20)
    gen = VQMGenerator(VQMConfig(), masks)
    areas = masks.reshape(20, -1).sum(1).astype(np.int64)
    rng = np.random.default_rng(3)
    for i in range(20):
        expected = set(np.argsort(np.abs(areas - areas[i]) + (np.arange(20) == i) * 10**9)[:4])
        for _ in range(10):
            s = gen.sample(masks[i], rng, index=i, category="cross_image")
            j = int(s.op_name.split(":")[1])
            assert j != i and j in expected
            assert np.array_equal(s.mask, masks[j])


def test_chained_uses_two_or_three_distinct_non_blob_ops():
    gen = VQMGenerator(VQMConfig(), reference_masks())
    rng = np.random.default_rng(4)
    for _ in range(100):
        name = gen.sample(typical_mask(64), rng, category="chained").op_name
        ops = name.removeprefix("chain:").split("+")
        assert 2 <= len(ops) <= 3 and len(set(ops)) == len(ops)
        assert not set(ops) & {"gaussian_blob", "circular_blob", "convex_hull", "bounding_box"}


def test_same_seed_same_sample():
    gen = VQMGenerator(VQMConfig(), reference_masks())
    a = [gen.sample(typical_mask(64), np.random.default_rng(9)) for _ in range(2)]
    assert a[0].op_name == a[1].op_name and np.array_equal(a[0].mask, a[1].mask)


def test_cross_image_needs_reference_masks():
    with pytest.raises(ValueError, match="at least 2 reference masks"):
        VQMGenerator(VQMConfig(), reference_masks(n=1))
    no_cross = {**PAPER_CATEGORY_PROBS, "cross_image": 0.0, "identity": 0.30}
    VQMGenerator(VQMConfig(category_probs=no_cross))  # fine without references
