"""Every registered corruption op: defined on any mask, binary output, and it corrupts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data import corruption_ops as co
from tests.conftest import typical_mask

OPS = sorted(co.REGISTRY)


def edge_masks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tiny = np.zeros((64, 64), np.uint8)
    tiny[30, 30] = 1
    multi = np.zeros((40, 56), np.uint8)  # non-square, three components
    multi[5:10, 5:10] = 1
    multi[20:35, 30:50] = 1
    multi[2, 50] = 1
    return {
        "empty": np.zeros((64, 64), np.uint8),
        "full": np.ones((64, 64), np.uint8),
        "tiny_pixel": tiny,
        "tiny_image": np.ones((3, 3), np.uint8),
        "random": (rng.random((50, 70)) < 0.5).astype(np.uint8),
        "multi_component": multi,
        "typical": typical_mask(96),
    }


@pytest.mark.parametrize("name", OPS)
def test_op_is_defined_on_any_mask(name):
    op = co.get_op(name)
    for label, mask in edge_masks().items():
        before = mask.copy()
        for seed in range(3):
            out = op(mask, np.random.default_rng(seed))
            assert out.shape == mask.shape, (name, label)
            assert out.dtype == np.uint8, (name, label)
            assert set(np.unique(out).tolist()) <= {0, 1}, (name, label)
            assert np.array_equal(mask, before), f"{name} modified its input ({label})"


@pytest.mark.parametrize("name", [n for n in OPS if n != "identity"])
def test_op_changes_a_typical_mask(name):
    mask = typical_mask(128)
    changed = [
        not np.array_equal(co.get_op(name)(mask, np.random.default_rng(s)), mask) for s in range(8)
    ]
    assert any(changed), f"{name} never changed a typical mask in 8 draws"


def test_identity_returns_an_equal_copy():
    mask = typical_mask(64)
    out = co.get_op("identity")(mask, np.random.default_rng(0))
    assert np.array_equal(out, mask) and out is not mask


def test_pools_match_spec_tables():
    """The pools are the tables of docs/METHOD.md §2.2-§2.4."""
    assert len(co.SINGLE_POOL) == 40
    assert [op.name for op in co.HEAVY_POOL] == [
        "erosion_11",
        "dilation_11",
        "shift_very_large",
        "scale_very_small",
        "scale_very_large",
        "grid_very_heavy",
        "holes_many",
    ]
    assert {op.name: op.weight for op in co.CATASTROPHIC_POOL} == {
        "invert": 1.0,
        "empty": 0.5,
        "full": 0.5,
        "random_50": 0.3,
    }
    assert co.get_op("erosion_9").weight == 0.8 and co.get_op("polygon_3").weight == 0.5
    assert set(co.BLOB_POOL_NAMES) <= {op.name for op in co.SINGLE_POOL}
    assert not {op.name for op in co.CHAINABLE_POOL} & set(co.BLOB_POOL_NAMES)
    assert len(co.CHAINABLE_POOL) == len(co.SINGLE_POOL) - len(co.BLOB_POOL_NAMES)


def test_unknown_op_lists_valid_names():
    with pytest.raises(KeyError, match="erosion_5"):
        co.get_op("erode_lots")


def test_pixel_parameters_scale_with_mask_size():
    """The scaling rules of docs/METHOD.md §2.6."""
    erosion9 = co.get_op("erosion_9")
    assert erosion9.resolved_params((224, 224))["kernel_size"] == 9
    assert erosion9.resolved_params((112, 112))["kernel_size"] == 5  # radius 4 -> 2
    assert erosion9.resolved_params((112, 112), scale_with_size=False)["kernel_size"] == 9
    holes = co.get_op("holes_large").resolved_params((112, 112))
    assert holes["radius_range"] == (4, 8)
    elastic = co.get_op("elastic_light").resolved_params((112, 112))
    assert elastic["alpha"] == pytest.approx(30 / 4) and elastic["sigma"] == pytest.approx(2)
    # Relative parameters do not scale.
    assert co.get_op("shift_small").resolved_params((64, 64))["max_ratio"] == 0.1


def test_scaling_keeps_targets_comparable_across_sizes():
    """An erosion removes about the same fraction of a mask at 128 px as at 224 px."""
    from data.vqm_generator import dice_score

    big, small = typical_mask(224), typical_mask(128)
    rng = np.random.default_rng(0)
    d_big = dice_score(big, co.get_op("erosion_9")(big, rng))
    d_small = dice_score(small, co.get_op("erosion_9")(small, rng))
    d_small_unscaled = dice_score(small, co.get_op("erosion_9")(small, rng, scale_with_size=False))
    assert abs(d_small - d_big) < abs(d_small_unscaled - d_big)


def test_component_ops_act_on_multi_component_masks():
    mask = typical_mask(128)
    largest = co.get_op("largest_only")(mask, np.random.default_rng(0))
    assert largest.sum() < mask.sum() and np.all(largest <= mask)
    dropped = co.get_op("drop_component")(mask, np.random.default_rng(0))
    assert dropped.sum() < mask.sum() and np.all(dropped <= mask)


def test_component_ops_see_an_island_inside_a_hole():
    """A ring with an island in its hole has two components (one outer contour each only
    with a hierarchy-aware count): both ops must act on it."""
    ring = np.zeros((64, 64), np.uint8)
    cv2.circle(ring, (32, 32), 20, 1, -1)
    cv2.circle(ring, (32, 32), 12, 0, -1)
    island = np.zeros_like(ring)
    cv2.circle(island, (32, 32), 5, 1, -1)
    mask = ring | island
    largest = co.get_op("largest_only")(mask, np.random.default_rng(0))
    assert np.array_equal(largest, ring)
    for seed in range(4):
        dropped = co.get_op("drop_component")(mask, np.random.default_rng(seed))
        assert np.array_equal(dropped, ring) or np.array_equal(dropped, island)


def test_gaussian_blob_matches_the_mask_area():
    mask = typical_mask(128)
    blob = co.get_op("gaussian_blob")(mask, np.random.default_rng(0))
    assert abs(int(blob.sum()) - int(mask.sum())) <= 0.03 * mask.sum()
