"""Phase 2 data sets (data/seg_datasets.py): item format, augmentation alignment and
reproducibility, the release's CSV layouts, errors, and the cycling loader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from data.augment import apply_spatial, brightness_contrast, sample_spatial
from data.io import DataError
from data.samplers import EpochSampler, sample_rng
from data.seg_datasets import (
    LabeledSegDataset,
    UnlabeledSegDataset,
)
from prepare_unsupervised_images.create_isic2020_subsets import RELEASE_COLUMNS

# The ISIC subset CSVs: the release's metadata columns, then img_path.
ISIC_COLUMNS = [*RELEASE_COLUMNS, "img_path"]


def lesion_mask(size: int, k: int) -> np.ndarray:
    """An off-centre, asymmetric mask (an L shape), different per k: any flip or rotation
    moves it, so a misaligned pair would show."""
    m = np.zeros((size, size), np.uint8)
    s = size // 8
    m[s : 4 * s, s + k % 3 : 6 * s] = 1
    m[s : 7 * s, s + k % 3 : 3 * s] = 1
    return m


def red_is_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB image whose red channel is mask * 255 (green/blue random texture)."""
    h, w = mask.shape
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[..., 0] = mask * 255
    return img


@pytest.fixture(scope="module")
def labeled_csv(tmp_path_factory) -> Path:
    """5 image/mask pairs on disk (40 x 30 px, masks 0/255), in a relative-path CSV."""
    root = tmp_path_factory.mktemp("labeled")
    rng = np.random.default_rng(0)
    rows = []
    for k in range(5):
        mask = cv2.resize(lesion_mask(40, k), (40, 30), interpolation=cv2.INTER_NEAREST)
        img = red_is_mask(mask, rng)
        cv2.imwrite(str(root / f"img{k}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / f"mask{k}.png"), mask * 255)
        rows.append({"image_path": f"img{k}.png", "mask_path": f"mask{k}.png"})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    return root / "train.csv"


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("unlabeled")
    rng = np.random.default_rng(1)
    paths = []
    for k in range(4):
        p = root / f"u{k}.jpg"
        cv2.imwrite(str(p), rng.integers(0, 256, (50, 60, 3), dtype=np.uint8))
        paths.append(p)
    return paths


def aligned_set(n: int = 4, size: int = 48, augment: bool = True) -> LabeledSegDataset:
    rng = np.random.default_rng(5)
    masks = np.stack([lesion_mask(size, k) for k in range(n)])
    images = np.stack([red_is_mask(m, rng) for m in masks])
    return LabeledSegDataset.from_arrays(images, masks, augment=augment, seed=7)


# --------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------


def test_labeled_item_format_and_resize(labeled_csv):
    ds = LabeledSegDataset(labeled_csv, image_size=32, augment=True, num_threads=1)
    assert len(ds) == 5
    item = ds[3]
    assert set(item) == {"image", "mask", "index"}
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32)
    assert item["mask"].dtype == torch.uint8 and item["mask"].shape == (1, 32, 32)
    assert item["image"].is_contiguous()
    assert set(item["mask"].unique().tolist()) == {0, 1}
    assert item["index"] == 3


def test_unlabeled_item_format(image_files, tmp_path):
    pd.DataFrame({"img_path": [str(p) for p in image_files]}).to_csv(tmp_path / "u.csv")
    ds = UnlabeledSegDataset(tmp_path / "u.csv", image_size=32, augment=True, num_threads=1)
    assert len(ds) == 4
    item = ds[2]
    assert set(item) == {"image", "index"}
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32)
    assert item["index"] == 2


def test_without_augmentation_items_are_the_cache_and_do_not_alias_it(labeled_csv):
    ds = LabeledSegDataset(labeled_csv, image_size=32, augment=False, num_threads=1)
    for index in (1, 1 + 7 * len(ds)):  # any epoch: no randomness
        item = ds[index]
        assert item["index"] == 1
        np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), ds.images[1])
        np.testing.assert_array_equal(item["mask"][0].numpy(), ds.masks[1])
    item["image"].zero_()
    item["mask"].fill_(7)
    assert ds.images[1].any() and ds.masks[1].max() == 1


def test_csv_image_is_rgb_and_mask_binary(labeled_csv):
    """The red channel of the files is the mask: RGB order and mask decoding agree."""
    ds = LabeledSegDataset(labeled_csv, image_size=32, augment=False, num_threads=1)
    item = ds[0]
    red_fg = item["image"][0] > 127
    agreement = (red_fg == item["mask"][0].bool()).float().mean().item()
    assert agreement > 0.95  # resampling differs only at the boundary


# --------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------


def test_augmentation_keeps_image_and_mask_aligned():
    ds = aligned_set()
    moved = 0
    for epoch in range(12):
        for i in range(len(ds)):
            item = ds[epoch * len(ds) + i]
            mask = item["mask"][0].numpy()
            # Red is 0 or 255 before brightness/contrast (+-20 %): it stays on its side of 102.
            red_fg = item["image"][0].numpy() > 102
            assert (red_fg == mask.astype(bool)).mean() > 0.97, (epoch, i)
            moved += not np.array_equal(mask, ds.masks[i])
    assert moved > 30  # most draws flip or rotate (3/4 flip at least once)


def test_labeled_view_replays_the_shared_augmentation():
    """The item is exactly data.augment's joint flip/rotation (mask nearest, so binary; at
    most 20 deg) followed by brightness/contrast of the image only, drawn from
    sample_rng(seed, epoch, index)."""
    ds = aligned_set()
    n, rotated, photometric = len(ds), 0, 0
    for epoch in range(10):
        i = epoch % n
        rng = sample_rng(ds.seed, epoch, i)
        params = sample_spatial(rng)
        assert abs(params.angle) <= 20.0
        image = apply_spatial(ds.images[i], params, is_mask=False)
        mask = apply_spatial(ds.masks[i], params, is_mask=True)
        if rng.random() < 0.5:
            image = brightness_contrast(image, rng)
            photometric += 1
        rotated += params.angle != 0
        item = ds[epoch * n + i]
        np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), image)
        np.testing.assert_array_equal(item["mask"][0].numpy(), mask)
        assert set(np.unique(mask).tolist()) <= {0, 1}
    assert rotated > 0 and photometric > 0  # both branches exercised


def test_same_seed_epoch_index_same_item_and_new_epoch_new_draw():
    ds = aligned_set()
    n = len(ds)
    a, b = ds[2], ds[2]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    other = aligned_set()  # a fresh object with the same seed reproduces it
    assert torch.equal(other[2]["image"], a["image"])
    epochs = [ds[e * n + 2]["image"] for e in range(6)]
    assert all(item["index"] == 2 for item in (ds[e * n + 2] for e in range(6)))
    assert sum(not torch.equal(epochs[0], x) for x in epochs[1:]) >= 4
    reseeded = LabeledSegDataset.from_arrays(ds.images, ds.masks, augment=True, seed=8)
    draws = [reseeded[e * n + 2]["image"] for e in range(6)]
    assert sum(not torch.equal(x, y) for x, y in zip(epochs, draws)) >= 4


def test_unlabeled_weak_view_is_flips_only():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    ds = UnlabeledSegDataset.from_arrays(images, augment=True, seed=4)
    base = images[1]
    flips = {
        "none": base,
        "h": base[:, ::-1],
        "v": base[::-1],
        "hv": base[::-1, ::-1],
    }
    seen = set()
    for epoch in range(16):
        img = ds[epoch * 3 + 1]["image"].permute(1, 2, 0).numpy()
        match = [k for k, f in flips.items() if np.array_equal(img, f)]
        assert match, f"epoch {epoch}: not a pure flip (no rotation or photometric change)"
        seen.add(match[0])
    assert len(seen) >= 3
    assert torch.equal(ds[1]["image"], ds[1]["image"])
    plain = UnlabeledSegDataset.from_arrays(images, augment=False)
    np.testing.assert_array_equal(plain[4]["image"].permute(1, 2, 0).numpy(), images[1])


def test_plain_and_epoch_loaders_batch_uint8():
    ds = aligned_set(n=4, size=16)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.uint8
    assert batch["mask"].shape == (4, 1, 16, 16) and batch["mask"].dtype == torch.uint8
    assert batch["index"].tolist() == [0, 1, 2, 3]
    sampler = EpochSampler(len(ds), shuffle=True, seed=0)
    sampler.set_epoch(3)
    batch = next(iter(DataLoader(ds, batch_size=4, sampler=sampler)))
    assert sorted(batch["index"].tolist()) == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------
# CSV layouts and errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["isic_release", "img_path_only", "image_path"])
def test_unlabeled_column_layouts(layout, image_files, tmp_path):
    paths = [str(p) for p in image_files]
    if layout == "isic_release":
        df = pd.DataFrame(
            {c: [f"ISIC_{k:07d}" for k in range(4)] for c in ISIC_COLUMNS[:-1]}
            | {"img_path": paths}
        )
        df = df[ISIC_COLUMNS]
    elif layout == "img_path_only":
        df = pd.DataFrame({"img_path": paths})
    else:
        df = pd.DataFrame({"image_path": paths})
    df.to_csv(tmp_path / "u.csv", index=False)
    ds = UnlabeledSegDataset(tmp_path / "u.csv", image_size=24, augment=False, num_threads=1)
    assert len(ds) == 4 and ds[3]["image"].shape == (3, 24, 24)


def test_empty_csvs_are_clear_errors(tmp_path):
    (tmp_path / "zero.csv").write_text("")
    (tmp_path / "header.csv").write_text("image_path,mask_path\n")
    (tmp_path / "uheader.csv").write_text("img_path\n")
    with pytest.raises(DataError, match="empty"):
        LabeledSegDataset(tmp_path / "zero.csv", 32, augment=False)
    with pytest.raises(DataError, match="no rows"):
        LabeledSegDataset(tmp_path / "header.csv", 32, augment=False)
    with pytest.raises(DataError, match="no rows"):
        UnlabeledSegDataset(tmp_path / "uheader.csv", 32, augment=False)


def test_missing_files_and_columns_are_named(labeled_csv, tmp_path):
    df = pd.read_csv(labeled_csv)
    df["image_path"] = [str(labeled_csv.parent / p) for p in df["image_path"]]
    df["mask_path"] = [str(labeled_csv.parent / p) for p in df["mask_path"]]
    df.loc[2, "mask_path"] = str(tmp_path / "gone.png")
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"line 4: mask_path does not exist: .*gone\.png"):
        LabeledSegDataset(tmp_path / "bad.csv", 32, augment=False)
    with pytest.raises(DataError, match="CSV not found"):
        UnlabeledSegDataset(tmp_path / "nope.csv", 32, augment=False)
    pd.DataFrame({"path": ["a.png"]}).to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(DataError, match="img_path"):
        UnlabeledSegDataset(tmp_path / "cols.csv", 32, augment=False)


def test_bad_arguments():
    ds = aligned_set()
    with pytest.raises(IndexError, match="index must be >= 0"):
        ds[-1]
    with pytest.raises(ValueError, match="masks must be"):
        LabeledSegDataset.from_arrays(ds.images, ds.masks[:, :10], augment=False)
    with pytest.raises(TypeError, match="uint8"):
        UnlabeledSegDataset.from_arrays(ds.images.astype(np.float32), augment=False)
    with pytest.raises(ValueError, match="image_size"):
        LabeledSegDataset("unused.csv", 0, augment=False)
