"""The g_phi data set: fixed evaluation VQMs, reproducible training draws, weak models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.mq_dataset import CATEGORY_IDS, MQDataset, quality_input
from data.vqm_generator import dice_score


def all_items(ds: MQDataset) -> list[dict]:
    return [ds[i] for i in range(len(ds))]


def test_fixed_validation_vqms_identical_across_constructions(tiny_demo):
    a = all_items(MQDataset.for_evaluation(tiny_demo["val"], 64, samples_per_image=5, seed=7))
    b = all_items(MQDataset.for_evaluation(tiny_demo["val"], 64, samples_per_image=5, seed=7))
    assert len(a) == 20
    for x, y in zip(a, b):
        assert torch.equal(x["mask"], y["mask"]) and torch.equal(x["image"], y["image"])
        assert x["quality"] == y["quality"] and x["category"] == y["category"]
    # ... and identical across epochs: an epoch-encoded index gives the same VQM.
    ds = MQDataset.for_evaluation(tiny_demo["val"], 64, samples_per_image=5, seed=7)
    assert torch.equal(ds[3]["mask"], ds[3 + 5 * len(ds)]["mask"])
    c = all_items(MQDataset.for_evaluation(tiny_demo["val"], 64, samples_per_image=5, seed=8))
    assert any(not torch.equal(x["mask"], z["mask"]) for x, z in zip(a, c))
    # The test split has a stream of its own: the same CSV and seed give other VQMs.
    t = all_items(
        MQDataset.for_evaluation(tiny_demo["val"], 64, samples_per_image=5, seed=7, split="test")
    )
    assert any(x["category"] != z["category"] for x, z in zip(a, t))


def test_training_draws_are_reproducible_and_change_per_epoch(tiny_demo):
    ds = MQDataset.for_training(tiny_demo["train"], 64, samples_per_image=3, seed=1)
    n = len(ds)
    assert n == 36
    first, again = ds[5], ds[5]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    later = [ds[5 + e * n] for e in range(1, 6)]  # the same sample in later epochs
    assert any(not torch.equal(first["mask"], x["mask"]) for x in later)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.uint8
    assert item["mask"].shape == (1, 64, 64) and set(item["mask"].unique().tolist()) <= {0, 1}
    assert 0.0 <= float(item["quality"]) <= 1.0


def test_targets_are_dice_against_the_augmented_gt(tiny_demo):
    ds = MQDataset.for_training(tiny_demo["train"], 64, samples_per_image=2, seed=2)
    from data.augment import apply_spatial, sample_spatial
    from data.samplers import sample_rng

    for index in range(8):
        _, sample, img_idx = ds.draw(index)
        rng = sample_rng(2, 0, index)
        params = sample_spatial(rng, max_degrees=20.0)
        gt = apply_spatial(ds.masks[img_idx], params, is_mask=True)
        assert sample.quality == pytest.approx(dice_score(gt, sample.mask))


def test_normalised_output_equals_device_side_assembly(tiny_demo):
    raw = MQDataset.for_evaluation(tiny_demo["test"], 64, samples_per_image=2, seed=0)
    norm = MQDataset.for_evaluation(
        tiny_demo["test"], 64, samples_per_image=2, seed=0, normalize=True
    )
    a, b = raw[1], norm[1]
    expected = quality_input(a["image"][None], a["mask"][None])[0]
    assert b["input"].shape == (4, 64, 64) and b["input"].dtype == torch.float32
    assert torch.allclose(b["input"], expected)


@pytest.mark.slow
def test_weak_model_predictions_serve_as_corruptions(tiny_demo, tmp_path):
    from training.train_weak_models import train_weak_models

    weak_dir = tmp_path / "weak"
    saved = train_weak_models(
        tiny_demo["train"],
        weak_dir,
        image_size=64,
        epochs=2,
        save_epochs=(1, 2),
        batch_size=4,
        num_workers=0,
    )
    assert [p.name for p in saved] == ["weak_model_epoch_1.pth", "weak_model_epoch_2.pth"]
    with pytest.raises(FileExistsError):
        train_weak_models(tiny_demo["train"], weak_dir, image_size=64, epochs=1, save_epochs=(1,))
    ds = MQDataset.for_training(
        tiny_demo["train"], 64, samples_per_image=2, seed=0, weak_model_dir=weak_dir, weak_prob=1.0
    )
    assert ds.weak_masks.shape[:2] == (2, 12)
    for i in range(6):
        item = ds[i]
        assert item["category"] == CATEGORY_IDS["weak_model"]
        _, sample, _ = ds.draw(i)
        assert sample.op_name.startswith("weak_model:epoch")
        assert float(item["quality"]) == pytest.approx(sample.quality)
    # Stale weak models (another image size or split) are refused, naming both.
    with pytest.raises(ValueError, match=r"trained at 64 px, but g_phi trains at 96 px"):
        MQDataset.for_training(
            tiny_demo["train"], 96, samples_per_image=2, weak_model_dir=weak_dir, weak_prob=0.5
        )
    with pytest.raises(ValueError, match=r"val\.csv: delete"):
        MQDataset.for_training(
            tiny_demo["val"], 64, samples_per_image=2, weak_model_dir=weak_dir, weak_prob=0.5
        )


def test_bad_settings_fail_early(tiny_demo):
    with pytest.raises(ValueError, match="K"):
        MQDataset.for_evaluation(tiny_demo["val"], 64, samples_per_image=0)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    masks = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="weak"):
        MQDataset(images, masks, 1, train=True, weak_prob=0.5)
