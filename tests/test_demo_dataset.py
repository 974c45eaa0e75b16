"""The built-in demo set: layout readable by data.io, sane masks and images, seeded
reproducibility, and a generator that reuses, refuses or overwrites a folder safely."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from data.io import load_labeled_arrays, load_labeled_csv, load_unlabeled_csv, read_image
from prepare_datasets.make_demo_dataset import MANIFEST, main, make_demo_dataset

TINY = {"image_size": 64, "num_train": 8, "num_val": 3, "num_test": 3, "num_unlabeled": 6}
LABELED = ("train", "val", "test")


def _make(out, seed=0, **overrides):
    return make_demo_dataset(out, **{**TINY, **overrides}, seed=seed, progress=False)


def _all_bytes(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, _make(out)


@pytest.fixture(scope="module")
def labeled(demo):
    _, csvs = demo
    images, masks = zip(*(load_labeled_arrays(load_labeled_csv(csvs[s]), None) for s in LABELED))
    return np.concatenate(images), np.concatenate(masks)


def test_layout_and_csvs_resolve_through_data_io(demo):
    out, csvs = demo
    assert set(csvs) == {"train", "val", "test", "unlabeled"}
    assert len(list((out / "images").glob("*.png"))) == 8 + 3 + 3 + 6
    assert len(list((out / "masks").glob("*.png"))) == 8 + 3 + 3
    for split, n in (("train", 8), ("val", 3), ("test", 3)):
        df = pd.read_csv(csvs[split])
        assert list(df.columns) == ["image_path", "mask_path"]
        # Relative to the CSV's folder, like the release's CSVs.
        assert df["image_path"].str.match(r"^images/[\w]+\.png$").all()
        assert df["mask_path"].str.match(r"^masks/[\w]+\.png$").all()
        split_paths = load_labeled_csv(csvs[split])
        assert len(split_paths) == n
        assert all(p.is_file() for p in split_paths.image_paths + split_paths.mask_paths)
    unl = pd.read_csv(csvs["unlabeled"])
    assert list(unl.columns) == ["img_path"]
    unl_paths = load_unlabeled_csv(csvs["unlabeled"])
    assert len(unl_paths) == 6
    assert read_image(unl_paths[0]).shape == (64, 64, 3)
    # No image is listed twice, within or across splits.
    listed = [p for s in LABELED for p in load_labeled_csv(csvs[s]).image_paths] + unl_paths
    assert len(set(listed)) == len(listed)


def test_masks_binary_nonempty_and_varied(demo, labeled):
    out, _ = demo
    for path in (out / "masks").glob("*.png"):
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert raw.ndim == 2 and raw.dtype == np.uint8
        assert set(np.unique(raw).tolist()) <= {0, 255}
    images, masks = labeled
    assert images.shape == (14, 64, 64, 3) and masks.shape == (14, 64, 64)
    area = masks.mean(axis=(1, 2))
    assert (area > 0.01).all() and (area < 0.6).all()
    assert area.max() > 2 * area.min()


def test_images_textured_and_lesions_darker_than_skin(labeled):
    images, masks = labeled
    assert (images.reshape(len(images), -1, 3).std(axis=1) > 2).all()
    grey = images.astype(np.float32).mean(axis=3)
    lesion = np.array([g[m == 1].mean() for g, m in zip(grey, masks)])
    skin = np.array([g[m == 0].mean() for g, m in zip(grey, masks)])
    assert lesion.mean() < skin.mean() - 15
    assert (lesion < skin).mean() >= 0.8


def test_same_seed_same_bytes_other_seed_differs(demo, tmp_path):
    out, _ = demo
    _make(tmp_path / "again", seed=0)
    assert _all_bytes(tmp_path / "again") == _all_bytes(out)
    _make(tmp_path / "other", seed=1)
    first = "images/demo_train_0001.png"
    assert (tmp_path / "other" / first).read_bytes() != (out / first).read_bytes()


def test_complete_set_with_same_arguments_is_reused(tmp_path):
    csvs = _make(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST.name).read_text())
    assert manifest["status"] == "complete" and manifest["arguments"]["seed"] == 0
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    first = tmp_path / "images" / "demo_train_0001.png"
    first.write_bytes(b"edited by hand")  # a reused set keeps it; a regenerated one not
    assert _make(tmp_path) == csvs
    assert first.read_bytes() == b"edited by hand"
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != first)


def test_interrupted_set_is_completed(tmp_path):
    _make(tmp_path)
    (tmp_path / "masks" / "demo_val_0002.png").unlink()
    _make(tmp_path)  # same arguments: ours to redo, no overwrite needed
    assert len(load_labeled_csv(tmp_path / "val.csv")) == 3


def test_refuses_foreign_folder_and_overwrite_keeps_foreign_files(tmp_path):
    notes = tmp_path / "my_notes.txt"
    notes.write_text("not the demo's")
    with pytest.raises(FileExistsError, match="overwrite"):
        _make(tmp_path)
    assert not (tmp_path / "train.csv").exists()
    _make(tmp_path, overwrite=True)
    assert notes.read_text() == "not the demo's"
    assert len(load_labeled_csv(tmp_path / "train.csv")) == 8


def test_other_arguments_refused_then_overwrite_removes_stale_demo_files(tmp_path):
    _make(tmp_path)
    with pytest.raises(FileExistsError, match=r"num_train=8 \(requested num_train=5\)"):
        _make(tmp_path, num_train=5)
    _make(tmp_path, num_train=5, overwrite=True)
    assert len(load_labeled_csv(tmp_path / "train.csv")) == 5
    assert not (tmp_path / "images" / "demo_train_0006.png").exists()
    assert not (tmp_path / "masks" / "demo_train_0008.png").exists()
    assert (tmp_path / "images" / "demo_val_0001.png").exists()


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--output_dir", str(out), "--image_size", "48", "--num_train", "2", "--num_val",
            "1", "--num_test", "1", "--num_unlabeled", "1", "--no_progress"]  # fmt: skip
    assert main(argv) == 0
    assert cv2.imread(str(out / "masks" / "demo_test_0001.png")).shape[:2] == (48, 48)
    assert main([*argv[:-1], "--num_train", "3", "--no_progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_glands_kind_is_another_target_and_reproducible(demo, tmp_path):
    out, _ = demo
    csvs = _make(tmp_path / "glands", kind="glands")
    _make(tmp_path / "glands_again", kind="glands")
    assert _all_bytes(tmp_path / "glands") == _all_bytes(tmp_path / "glands_again")
    manifest = json.loads((tmp_path / "glands" / MANIFEST.name).read_text())
    assert manifest["arguments"]["kind"] == "glands"
    _, masks = load_labeled_arrays(load_labeled_csv(csvs["train"]), None)
    fractions = (masks > 0).mean(axis=(1, 2))
    assert np.all(fractions > 0.02) and np.all(fractions < 0.4)
    # another target: not the dermoscopy set's images
    first = "images/demo_train_0001.png"
    assert (tmp_path / "glands" / first).read_bytes() != (out / first).read_bytes()
    with pytest.raises(ValueError, match="kind must be one of"):
        _make(tmp_path / "bad", kind="cells")
