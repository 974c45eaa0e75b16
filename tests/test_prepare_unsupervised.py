"""Unlabeled sets: ISIC 2020 subsets (deduplicated, held out, nested, stratified, seeded),
the resizers (reduced-scale JPEG decoding, resumable, failures named) and the colonoscopy
folder listing, all loadable with data.io once the images are in place."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from benchmarks import resize_throughput
from data.image_resize import reduction_factor, resize_image
from data.io import load_unlabeled_csv, read_for_resize, read_image
from prepare_unsupervised_images import (
    create_colon_unlabeled_metadata,
    create_isic2020_subsets,
    resize_colon_unlabeled_images,
    resize_isic2020_images,
)
from prepare_unsupervised_images.create_isic2020_subsets import RELEASE_COLUMNS
from prepare_unsupervised_images.image_resizer import list_images

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
QUIET = ["--no_progress", "--num_workers", "2"]


def make_metadata(folder: Path, n: int, n_dupes: int, malignant_every: int = 20):
    """A ground-truth CSV of n unique images plus n_dupes duplicates, and the pairs list."""
    names = [f"ISIC_{i:07d}" for i in range(n + n_dupes)]
    target = [int(i % malignant_every == 0) for i in range(n + n_dupes)]
    df = pd.DataFrame(
        {
            "image_name": names,
            "patient_id": [f"IP_{i // 3:07d}" for i in range(n + n_dupes)],
            "sex": ["female", "male", ""] * ((n + n_dupes) // 3) + ["male"] * ((n + n_dupes) % 3),
            "age_approx": [45.0] * (n + n_dupes),
            "anatom_site_general_challenge": ["torso"] * (n + n_dupes),
            "diagnosis": ["melanoma" if t else "unknown" for t in target],
            "benign_malignant": ["malignant" if t else "benign" for t in target],
            "target": target,
        }
    )
    metadata = folder / "ISIC_2020_Training_GroundTruth.csv"
    df.to_csv(metadata, index=False)
    dupes = folder / "ISIC_2020_Training_Duplicates.csv"
    pd.DataFrame({"image_name_1": names[:n_dupes], "image_name_2": names[n:]}).to_csv(
        dupes, index=False
    )
    return metadata, dupes, set(names[n:])


def write_photo(path: Path, w: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])


def read_tables(out: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_csv(p) for p in sorted(out.glob("*.csv"))}


# --------------------------------------------------------------------------------------
# ISIC 2020 subsets
# --------------------------------------------------------------------------------------


def test_isic_subsets_nested_stratified_disjoint_and_seeded(tmp_path, capsys):
    metadata, dupes, dropped = make_metadata(tmp_path, n=3000, n_dupes=30)

    def isic_args(out: Path, images_dir: Path | None = None) -> list[str]:
        return [
            "--metadata_csv", str(metadata), "--duplicates_csv", str(dupes),
            "--images_dir", str(images_dir or out / "images"), "--output_dir", str(out),
            "--val_size", "200", "--test_size", "300", "--subset_sizes", "1000", "2000", "5000",
        ]  # fmt: skip

    out = tmp_path / "subsets"
    args = isic_args(out)
    assert create_isic2020_subsets.main(args) == 0
    printed = capsys.readouterr().out
    assert "removed 30 duplicate" in printed and "skipped train_subset_5k" in printed
    tables = read_tables(out)
    assert set(tables) == {"val", "test", "train_subset_1k", "train_subset_2k"}
    for t in tables.values():
        assert list(t.columns) == [*RELEASE_COLUMNS, "img_path"]
        assert not set(t["image_name"]) & dropped
        assert (t["img_path"] == "images/" + t["image_name"] + ".jpg").all()
    sets = {k: set(t["image_name"]) for k, t in tables.items()}
    assert [len(sets[k]) for k in ("val", "test", "train_subset_1k", "train_subset_2k")] == [
        200, 300, 1000, 2000,
    ]  # fmt: skip
    assert sets["train_subset_1k"] < sets["train_subset_2k"]
    assert not sets["val"] & sets["test"]
    assert not (sets["val"] | sets["test"]) & sets["train_subset_2k"]
    for name, t in tables.items():
        assert abs(t["target"].mean() - 0.05) <= 0.002, name

    again = tmp_path / "again"
    assert create_isic2020_subsets.main(isic_args(again)) == 0
    for name in tables:
        assert (again / f"{name}.csv").read_bytes() == (out / f"{name}.csv").read_bytes()
    # Same folder, same arguments: fine; another seed: refused unless --overwrite.
    assert create_isic2020_subsets.main(args) == 0
    capsys.readouterr()
    assert create_isic2020_subsets.main([*args, "--seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert create_isic2020_subsets.main([*args, "--seed", "1", "--overwrite"]) == 0
    # Images expected outside the output folder: absolute paths.
    elsewhere = tmp_path / "resized"
    assert create_isic2020_subsets.main(isic_args(tmp_path / "o", elsewhere)) == 0
    first = pd.read_csv(tmp_path / "o" / "val.csv")["img_path"].iloc[0]
    assert Path(first).is_absolute() and Path(first).parent == elsewhere.resolve()


def test_isic_bad_input(tmp_path, capsys):
    metadata, _, _ = make_metadata(tmp_path, n=50, n_dupes=0)

    def run(csv: Path, *extra: str) -> int:
        return create_isic2020_subsets.main(
            ["--metadata_csv", str(csv), "--images_dir", str(tmp_path / "img"),
             "--output_dir", str(tmp_path / "o"), *extra]
        )  # fmt: skip

    assert run(metadata, "--val_size", "30", "--test_size", "20") == 2
    assert "leave no training image" in capsys.readouterr().err
    sizes = ("--val_size", "5", "--test_size", "5", "--subset_sizes", "10")
    assert run(metadata, *sizes, "--check_images") == 2
    assert "ISIC_" in capsys.readouterr().err
    assert run(metadata, *sizes) == 0
    assert "20 of 20 images are not in" in capsys.readouterr().out
    assert run(tmp_path / "none.csv", *sizes) == 2
    assert "none.csv" in capsys.readouterr().err
    pd.read_csv(metadata).drop(columns=["target"]).to_csv(tmp_path / "bad.csv", index=False)
    assert run(tmp_path / "bad.csv", *sizes) == 2
    assert "target" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------


def test_reduction_factor_leaves_at_least_the_target_size():
    assert reduction_factor(4000, 3000, 224, keep_aspect=False) == 8
    assert reduction_factor(6000, 4000, 224, keep_aspect=False) == 8  # 750 x 500
    assert reduction_factor(1000, 800, 224, keep_aspect=False) == 2  # 800 / 4 < 224
    assert reduction_factor(300, 300, 224, keep_aspect=False) == 1
    assert reduction_factor(448, 448, 224, keep_aspect=False) == 2
    # Keeping the aspect ratio, only the long side must reach the target.
    assert reduction_factor(4000, 1000, 224, keep_aspect=True) == 8
    assert reduction_factor(1000, 4000, 600, keep_aspect=False) == 1


def test_reduced_decode_is_smaller_and_close_to_full(tmp_path):
    path = tmp_path / "big.jpg"
    write_photo(path, 1200, 900, seed=0)
    reduced = read_for_resize(path, 100, keep_aspect=False)
    assert reduced.shape == (113, 150, 3)  # 1/8: ceil(900 / 8), ceil(1200 / 8)
    assert read_for_resize(path, 100, keep_aspect=False, reduced=False).shape == (900, 1200, 3)
    a = resize_image(reduced, 100).astype(float)
    b = resize_image(read_image(path), 100).astype(float)
    psnr = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    assert psnr > 35, psnr


def test_isic_resize_from_csvs_is_resumable_and_loads(tmp_path, capsys):
    metadata, _, _ = make_metadata(tmp_path, n=10, n_dupes=0)
    src = tmp_path / "train"
    for i, name in enumerate(pd.read_csv(metadata)["image_name"]):
        write_photo(src / f"{name}.jpg", 640 + 40 * i, 480, seed=i)
    write_photo(src / "ISIC_9999999.jpg", 640, 480, seed=99)  # in no CSV
    # A copy whose extension was renamed is found by its id and written as img_path says.
    (src / "ISIC_0000002.jpg").rename(src / "ISIC_0000002.JPEG")
    out = tmp_path / "subsets"
    subsets = [
        "--metadata_csv", str(metadata), "--images_dir", str(out / "images"),
        "--output_dir", str(out), "--val_size", "2", "--test_size", "2", "--subset_sizes", "6",
    ]  # fmt: skip
    assert create_isic2020_subsets.main(subsets) == 0
    csvs = [out / "train_subset_6.csv", out / "val.csv", out / "test.csv"]
    args = [
        "--input_dir",
        str(src),
        "--output_dir",
        str(out / "images"),
        "--image_size",
        "64",
        *QUIET,
    ]
    for c in csvs:
        args += ["--csv", str(c)]
    before = sorted((p.name, p.stat().st_mtime_ns) for p in src.iterdir())
    capsys.readouterr()
    assert resize_isic2020_images.main(args) == 0
    assert "10 resized, 0 already done" in capsys.readouterr().out
    assert sorted((p.name, p.stat().st_mtime_ns) for p in src.iterdir()) == before
    assert not (out / "images" / "ISIC_9999999.jpg").exists()
    for c in csvs:
        for p in load_unlabeled_csv(c):
            assert read_image(p).shape == (64, 64, 3)
    # Resuming: finished files are skipped, a missing one is redone.
    (out / "images" / "ISIC_0000003.jpg").unlink()
    assert resize_isic2020_images.main(args) == 0
    assert "1 resized, 9 already done" in capsys.readouterr().out
    assert not list((out / "images").glob(".*partial*")), "no temporary file is left behind"
    # Another size into the same folder: the existing outputs are named, never overwritten.
    other = args.copy()
    other[other.index("--image_size") + 1] = "48"
    kept = (out / "images" / "ISIC_0000001.jpg").read_bytes()
    assert resize_isic2020_images.main(other) == 2
    assert "exists with size (64, 64), not 48 x 48" in capsys.readouterr().err
    assert (out / "images" / "ISIC_0000001.jpg").read_bytes() == kept

    # A broken source is named; the others are still done.
    (src / "ISIC_0000004.jpg").write_bytes(b"\xff\xd8 truncated")
    (out / "images" / "ISIC_0000004.jpg").unlink()
    (out / "images" / "ISIC_0000005.jpg").unlink()
    assert resize_isic2020_images.main(args) == 2
    captured = capsys.readouterr()
    assert "ISIC_0000004.jpg" in captured.err and "1 resized" in captured.out
    # Without --csv: every JPEG of the folder (11, one of them broken).
    all_out = tmp_path / "all"
    every = ["--input_dir", str(src), "--output_dir", str(all_out), "--image_size", "32", *QUIET]
    assert resize_isic2020_images.main(every) == 2
    assert len(list(all_out.glob("*.jpg"))) == 9
    assert (all_out / "ISIC_0000002.JPEG").is_file(), "without --csv, names are kept"
    assert resize_isic2020_images.main(["--input_dir", str(tmp_path / "missing"), *QUIET]) == 2


# --------------------------------------------------------------------------------------
# Colonoscopy folder
# --------------------------------------------------------------------------------------


def test_colon_listing_resize_and_metadata(tmp_path, capsys):
    src = tmp_path / "Polyp-Box-Seg"
    names = ["seq1/a.jpg", "seq1/b.png", "seq2/c.jpg", "d.jpg"]
    for i, name in enumerate(names):
        write_photo(src / name, 400, 300, seed=i)
    write_photo(src / "masks" / "a.jpg", 400, 300, seed=9)  # masks are not unlabeled images
    write_photo(src / "seq2" / "c_mask.jpg", 400, 300, seed=10)
    (src / "seq1" / "a.txt").write_text("0 0.5 0.5 0.2 0.2")  # a box annotation
    assert [p.relative_to(src).as_posix() for p in list_images(src)] == sorted(names)

    out = tmp_path / "PolypBoxSeg_subsets"
    meta = ["--source_dir", str(src), "--output_dir", str(out), "--subset_sizes", "2", "3", "9"]
    assert create_colon_unlabeled_metadata.main([*meta, "--check_images"]) == 2
    assert "missing" in capsys.readouterr().err
    assert create_colon_unlabeled_metadata.main(meta) == 0
    printed = capsys.readouterr().out
    assert "not in" in printed and "skipped unlabeled_subset_9" in printed
    tables = read_tables(out)
    assert set(tables) == {"unlabeled", "unlabeled_subset_2", "unlabeled_subset_3"}
    assert sorted(tables["unlabeled"]["img_path"]) == sorted(f"images/{n}" for n in names)
    assert set(tables["unlabeled_subset_2"]["img_path"]) < set(
        tables["unlabeled_subset_3"]["img_path"]
    )

    resize = [
        "--input_dir",
        str(src),
        "--output_dir",
        str(out / "images"),
        "--image_size",
        "48",
        *QUIET,
    ]
    assert resize_colon_unlabeled_images.main(resize) == 0
    paths = load_unlabeled_csv(out / "unlabeled.csv")
    assert len(paths) == 4 and all(read_image(p).shape == (48, 48, 3) for p in paths)
    assert create_colon_unlabeled_metadata.main([*meta, "--check_images"]) == 0
    inside = ["--input_dir", str(src), "--output_dir", str(src / "resized"), *QUIET]
    assert resize_colon_unlabeled_images.main(inside) == 2


def test_benchmark_runs(capsys):
    argv = [
        "--num_images",
        "1",
        "--width",
        "640",
        "--height",
        "480",
        "--repeats",
        "1",
        "--workers",
        "1",
    ]
    assert resize_throughput.main(argv) == 0
    assert "speed-up" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_isic2020_subsets(tmp_path, capsys):
    metadata = SHARED_DATA / "ISIC2020_dedup_metadata.csv"
    if not metadata.is_file():
        pytest.skip(f"real data not found at {metadata} (../shared/data beside the project)")
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        # The images are not here: img_path is where they are expected (not checked).
        args = [
            "--metadata_csv",
            str(metadata),
            "--images_dir",
            str(out / "images"),
            "--output_dir",
            str(out),
        ]
        assert create_isic2020_subsets.main(args) == 0
        runs.append(out)
    tables = read_tables(runs[0])
    for csv in runs[0].glob("*.csv"):
        assert (runs[1] / csv.name).read_bytes() == csv.read_bytes(), csv.name
    whole = pd.read_csv(metadata)["target"].mean()
    subsets = {f"train_subset_{k}k": k * 1000 for k in (1, 5, 10, 20, 30)}
    sizes = {"val": 1000, "test": 1701, **subsets}
    assert {k: len(t) for k, t in tables.items()} == sizes
    for name, t in tables.items():
        assert abs(t["target"].mean() - whole) <= 0.002, (name, t["target"].mean(), whole)
        assert t["image_name"].is_unique
    order = list(subsets)
    for small, large in itertools.pairwise(order):
        assert set(tables[small]["image_name"]) < set(tables[large]["image_name"])
    val, test = set(tables["val"]["image_name"]), set(tables["test"]["image_name"])
    train = set(tables["train_subset_30k"]["image_name"])
    assert not val & test and not val & train and not test & train
    assert len(val | test | train) == 32701
