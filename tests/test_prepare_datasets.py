"""Labeled-set preparers: each distributed layout read from a small fake tree, pairs kept
together, masks binarised whatever their encoding, splits sized, stratified, seeded or
followed exactly, bad input named, sources untouched, and CSVs that data.io loads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data.image_resize import resize_image, resize_mask
from data.io import load_heldout_masks, load_labeled_arrays, load_labeled_csv, load_unlabeled_csv
from prepare_datasets import (
    prepare_CVC_ClinicDB,
    prepare_CVC_ColonDB,
    prepare_DermoFit,
    prepare_folder_pairs,
    prepare_PH2,
    prepare_SCD,
)
from prepare_datasets.labeled_set import MANIFEST
from prepare_datasets.pairing import match_by_stem
from prepare_datasets.splits import split_counts, stratified_order

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SPLITS = ("train", "val", "test")
QUIET = ["--no_progress", "--num_workers", "2"]


def prepare(module, root_flag: str, root: Path, out: Path, size: int, *extra: str) -> int:
    """`module.main` on the source folder `root` (given as `root_flag`), writing `size`-pixel
    pairs into `out` quietly, with the `extra` arguments; its exit status."""
    return module.main(
        [root_flag, str(root), "--output_dir", str(out), "--image_size", str(size), *extra, *QUIET]
    )


# --------------------------------------------------------------------------------------
# Fake trees
# --------------------------------------------------------------------------------------


def _shape(seed: int, h: int, w: int) -> np.ndarray:
    """A {0, 1} ellipse whose place and size depend on `seed` (tells pairs apart)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    centre = (int(rng.integers(w // 3, 2 * w // 3)), int(rng.integers(h // 3, 2 * h // 3)))
    axes = (int(rng.integers(w // 8, w // 4)), int(rng.integers(h // 8, h // 4)))
    cv2.ellipse(mask, centre, axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
    return mask


def write_pair(image_path: Path, mask_path: Path, seed: int, h=30, w=40, encoding="0255"):
    """An image that is bright exactly where its mask is foreground, and that mask."""
    shape = _shape(seed, h, w)
    rng = np.random.default_rng(seed + 1000)
    image = rng.integers(10, 60, size=(h, w, 3), dtype=np.uint8)
    image[shape > 0] += np.uint8(150)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(image_path), image)
    write_mask(mask_path, shape, encoding)
    return shape


def write_mask(path: Path, shape: np.ndarray, encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding == "0255":
        assert cv2.imwrite(str(path), shape * 255)
    elif encoding == "01":
        assert cv2.imwrite(str(path), shape)
    elif encoding == "rgb":
        rgb = np.zeros((*shape.shape, 3), np.uint8)
        rgb[shape > 0] = (0, 0, 200)  # a red lesion drawn on black
        assert cv2.imwrite(str(path), rgb)
    elif encoding == "palette":
        pil = Image.fromarray(shape, mode="L").convert("P")
        pil.putpalette([0, 0, 0, 20, 20, 20] + [0] * 762)  # index 1 is a dark grey
        pil.save(path)
    elif encoding == "jpeg":
        assert cv2.imwrite(str(path), shape * 255, [cv2.IMWRITE_JPEG_QUALITY, 40])
    else:
        raise ValueError(encoding)


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        p.relative_to(folder).as_posix(): (
            p.stat().st_mtime_ns,
            hashlib.md5(p.read_bytes()).hexdigest(),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def make_ph2(root: Path, n_common=80, n_atypical=80, n_melanoma=40) -> dict[str, int]:
    """PH2's layout with `PH2_dataset.txt`; returns the clinical diagnosis per id."""
    images = root / "PH2Dataset" / "PH2 Dataset images"
    codes = [0] * n_common + [1] * n_atypical + [2] * n_melanoma
    diagnosis = {}
    rows = ["||   Name   || Histological Diagnosis || Clinical Diagnosis || Asymmetry ||"]
    for i, code in enumerate(codes):
        cid = f"IMD{i + 2:03d}"
        diagnosis[cid] = code
        case = images / cid
        write_pair(
            case / f"{cid}_Dermoscopic_Image" / f"{cid}.bmp",
            case / f"{cid}_lesion" / f"{cid}_lesion.bmp",
            seed=i,
            h=18,
            w=24,
        )
        histology = "Melanoma" if code == 2 else ""
        rows.append(f"|| {cid} || {histology:>22} || {code:>18} ||         0 | T | A ||")
    rows += ["", "Legend:", "|| Clinical Diagnosis: 0 - Common Nevus; 1 - Atypical Nevus ||"]
    (root / "PH2Dataset" / "PH2_dataset.txt").write_text("\n".join(rows) + "\n")
    return diagnosis


def read_split(out: Path, split: str) -> list[str]:
    return [Path(p).stem for p in pd.read_csv(out / f"{split}.csv")["image_path"]]


def check_prepared(out: Path, n_expected: int, size: int) -> None:
    """Every split loads through data.io, masks are 0/255 and lie where images are bright."""
    total = 0
    for split in SPLITS:
        df = pd.read_csv(out / f"{split}.csv")
        assert list(df.columns) == ["image_path", "mask_path"]
        assert not any(Path(v).is_absolute() for v in df["image_path"])
        images, masks = load_labeled_arrays(load_labeled_csv(out / f"{split}.csv"), image_size=None)
        assert images.shape == (len(df), size, size, 3) and masks.shape == (len(df), size, size)
        for image, mask in zip(images, masks):
            grey = image.mean(axis=2)
            assert mask.any()
            assert grey[mask > 0].mean() > grey[mask == 0].mean() + 60, "image and mask mismatched"
        total += len(df)
    assert total == n_expected
    for path in (out / "masks").glob("*.png"):
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert raw.ndim == 2 and set(np.unique(raw).tolist()) <= {0, 255}


@pytest.fixture(scope="module")
def ph2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ph2src")
    return root, make_ph2(root)


@pytest.fixture(scope="module")
def ph2_prepared(ph2_root, tmp_path_factory):
    root, _ = ph2_root
    out = tmp_path_factory.mktemp("ph2out") / "PH2_segs_metadata"
    before = snapshot(root)
    assert prepare(prepare_PH2, "--ph2_root", root, out, 16) == 0
    assert snapshot(root) == before, "the source folder was modified"
    return out


# --------------------------------------------------------------------------------------
# PH2
# --------------------------------------------------------------------------------------


def test_ph2_default_split_is_140_20_40_and_stratified(ph2_root, ph2_prepared):
    _, diagnosis = ph2_root
    out = ph2_prepared
    splits = {s: read_split(out, s) for s in SPLITS}
    assert {s: len(v) for s, v in splits.items()} == {"train": 140, "val": 20, "test": 40}
    assert set().union(*splits.values()) == set(diagnosis)
    # 80/80/40 divides exactly: each split keeps the whole's 2:2:1 ratio.
    expected = {"train": [56, 56, 28], "val": [8, 8, 4], "test": [16, 16, 8]}
    for split, ids in splits.items():
        counts = np.bincount([diagnosis[i] for i in ids], minlength=3).tolist()
        assert counts == expected[split], split
    check_prepared(out, 200, 16)


def test_ph2_split_is_seeded(ph2_root, ph2_prepared, tmp_path):
    root, _ = ph2_root
    again, other = tmp_path / "again", tmp_path / "other"
    assert prepare(prepare_PH2, "--ph2_root", root, again, 16) == 0
    assert prepare(prepare_PH2, "--ph2_root", root, other, 16, "--seed", "1") == 0
    for split in SPLITS:
        assert (again / f"{split}.csv").read_bytes() == (ph2_prepared / f"{split}.csv").read_bytes()
    assert read_split(other, "test") != read_split(ph2_prepared, "test")
    for name in ("images/IMD002.png", "masks/IMD002.png"):
        assert (again / name).read_bytes() == (ph2_prepared / name).read_bytes()


def test_ph2_release_split_csvs_are_followed_exactly(ph2_root, tmp_path):
    root, diagnosis = ph2_root
    ids = sorted(diagnosis)
    chosen = {"train": ids[:10], "val": ids[10:13], "test": ids[13:18]}
    release = tmp_path / "release_splits"
    release.mkdir()
    for split, sids in chosen.items():
        # The release's CSVs point at the authors' machine; only the IMDnnn ids count.
        pd.DataFrame(
            {
                "image_path": [f"/home/author/data/PH2/images/{s}.bmp" for s in sids],
                "mask_path": [f"C:\\PH2\\masks\\{s}_lesion.bmp" for s in sids],
            }
        ).to_csv(release / f"ph2_{split}.csv", index=False)
    out = tmp_path / "out"
    assert prepare(prepare_PH2, "--ph2_root", root, out, 16, "--split_from", str(release)) == 0
    for split in SPLITS:
        assert read_split(out, split) == chosen[split]
    assert len(list((out / "images").glob("*.png"))) == 18


def test_ph2_id_list_split_and_unknown_ids(ph2_root, tmp_path, capsys):
    root, diagnosis = ph2_root
    ids = sorted(diagnosis)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("\n".join(ids[:6]) + "\n")
    (lists / "val.txt").write_text(ids[6] + "\n")
    (lists / "test.txt").write_text("\n".join(ids[7:9]) + "\n")
    out = tmp_path / "out"
    args = [
        "--ph2_root",
        str(root),
        "--output_dir",
        str(out),
        "--image_size",
        "16",
        "--split_from",
        str(lists),
    ]
    assert prepare_PH2.main([*args, *QUIET]) == 0
    assert read_split(out, "train") == ids[:6] and read_split(out, "val") == [ids[6]]

    (lists / "test.txt").write_text(ids[7] + "\nIMD999\n")
    bad_out = tmp_path / "bad"
    args[3] = str(bad_out)
    capsys.readouterr()
    assert prepare_PH2.main([*args, *QUIET]) == 2
    err = capsys.readouterr().err
    assert "IMD999" in err and "test.txt" in err
    assert not bad_out.exists(), "nothing is written for a bad split file"

    one_file = tmp_path / "split.csv"
    pd.DataFrame({"id": [ids[0], ids[0]], "split": ["train", "test"]}).to_csv(one_file, index=False)
    args[-1] = str(one_file)
    assert prepare_PH2.main([*args, *QUIET]) == 2
    assert "two splits" in capsys.readouterr().err


def test_ph2_layout_problems_are_named(tmp_path, capsys):
    assert prepare_PH2.main(["--ph2_root", str(tmp_path / "nowhere"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "--ph2_root" in err and "nowhere" in err and "does not exist" in err

    root = tmp_path / "ph2"
    make_ph2(root, 8, 8, 4)
    lesion = (
        root
        / "PH2Dataset"
        / "PH2 Dataset images"
        / "IMD004"
        / "IMD004_lesion"
        / "IMD004_lesion.bmp"
    )
    lesion.unlink()
    args = ["--ph2_root", str(root), "--image_size", "16", "--split_sizes", "13,2,4", *QUIET]
    assert prepare_PH2.main([*args, "--output_dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "without a mask" in err and "IMD004.bmp" in err and "--allow-unpaired" in err
    assert prepare_PH2.main([*args, "--output_dir", str(tmp_path / "b"), "--allow-unpaired"]) == 0
    assert sum(len(read_split(tmp_path / "b", s)) for s in SPLITS) == 19

    # An unreadable image is named, and no CSV is written.
    image = (
        root
        / "PH2Dataset"
        / "PH2 Dataset images"
        / "IMD005"
        / "IMD005_Dermoscopic_Image"
        / "IMD005.bmp"
    )
    good = image.read_bytes()
    image.write_bytes(b"not a bitmap")
    assert prepare_PH2.main([*args, "--output_dir", str(tmp_path / "c"), "--allow-unpaired"]) == 2
    assert "IMD005.bmp" in capsys.readouterr().err
    assert not (tmp_path / "c" / "train.csv").exists()
    # An unfinished folder is ours to redo, whatever the new settings, without --overwrite.
    image.write_bytes(good)
    rerun = [*args, "--output_dir", str(tmp_path / "c"), "--allow-unpaired", "--seed", "5"]
    assert prepare_PH2.main(rerun) == 0


# --------------------------------------------------------------------------------------
# SCD, DermoFit, CVC-ColonDB, CVC-ClinicDB
# --------------------------------------------------------------------------------------


def test_scd_layout_pairs_within_folders_and_groups(tmp_path):
    root = tmp_path / "SCD"
    seed = 0
    layout_counts = {}
    for set_name, group in (
        ("Skin Image Data Set-1", "melanoma"),
        ("Skin Image Data Set-2", "notmelanoma"),
    ):
        for source in ("dermIS", "dermquest"):
            folder = root / set_name / "skin_data" / group / source
            n = 6 if group == "melanoma" else 4
            for i in range(n):
                # The same names in both source folders: ids must still differ.
                write_pair(folder / f"img{i}_orig.jpg", folder / f"img{i}_contour.png", seed)
                seed += 1
            layout_counts[group] = layout_counts.get(group, 0) + n
    layout = prepare_SCD.find_scd(root)
    assert len(layout.samples) == 20 and not layout.unmatched_images
    assert len({s.sample_id for s in layout.samples}) == 20
    assert {g: sum(s.group == g for s in layout.samples) for g in layout_counts} == layout_counts
    out = tmp_path / "out"
    assert prepare(prepare_SCD, "--scd_root", root, out, 24) == 0
    check_prepared(out, 20, 24)
    # 70/10/20 of 20 pairs, 12 melanoma : 8 not.
    assert [len(read_split(out, s)) for s in SPLITS] == [14, 2, 4]
    test_groups = [s.group for s in layout.samples if s.sample_id in set(read_split(out, "test"))]
    assert sorted(test_groups) == ["melanoma", "melanoma", "notmelanoma", "notmelanoma"]


def test_dermofit_layout_and_class_strata(tmp_path):
    root = tmp_path / "Dermofit"
    seed = 0
    for cls, n in (("AK", 5), ("BCC", 10), ("MEL", 5)):
        for i in range(n):
            lesion = f"{cls[0]}{i + 1}"
            write_pair(
                root / cls / lesion / f"{lesion}.png",
                root / cls / lesion / f"{lesion}mask.png",
                seed,
            )
            seed += 1
    layout = prepare_DermoFit.find_dermofit(root)
    assert len(layout.samples) == 20
    assert {s.sample_id: s.group for s in layout.samples}["B3"] == "BCC"
    out = tmp_path / "out"
    rc = prepare(
        prepare_DermoFit, "--dermofit_root", root, out, 24, "--split_sizes", "0.5,0.25,0.25"
    )
    assert rc == 0
    check_prepared(out, 20, 24)
    for split, n in (("train", 10), ("val", 5), ("test", 5)):
        ids = read_split(out, split)
        assert len(ids) == n
        # Classes 1:2:1 in every split, within one image.
        counts = [sum(i.startswith(c) for i in ids) for c in "ABM"]
        assert all(abs(c - p * n) <= 1 for c, p in zip(counts, (0.25, 0.5, 0.25))), (split, counts)


def test_colondb_original_and_benchmark_layouts(tmp_path):
    orig = tmp_path / "CVC-ColonDB"
    for i in range(1, 11):
        write_pair(orig / f"{i}.bmp", orig / f"p{i}.bmp", seed=i)
        cv2.imwrite(str(orig / f"s{i}.bmp"), np.full((30, 40), 255, np.uint8))  # not masks
        cv2.imwrite(str(orig / f"c{i}.bmp"), np.zeros((30, 40), np.uint8))
    layout = prepare_CVC_ColonDB.find_colondb(orig)
    assert sorted(s.sample_id for s in layout.samples) == sorted(str(i) for i in range(1, 11))
    assert all(s.mask_path.name == f"p{s.sample_id}.bmp" for s in layout.samples)
    out = tmp_path / "out"
    assert prepare(prepare_CVC_ColonDB, "--colondb_root", orig, out, 24) == 0
    check_prepared(out, 10, 24)

    bench = tmp_path / "TestDataset" / "CVC-ColonDB"
    for i in range(1, 6):
        write_pair(bench / "images" / f"{i}.png", bench / "masks" / f"{i}.png", seed=i)
    assert len(prepare_CVC_ColonDB.find_colondb(tmp_path / "TestDataset").samples) == 5


def test_clinicdb_original_ground_truth_tiffs(tmp_path):
    root = tmp_path / "CVC-ClinicDB"
    for i in range(1, 11):
        write_pair(
            root / "Original" / f"{i}.tif",
            root / "Ground Truth" / f"{i}.tif",
            seed=i,
            encoding="rgb",
        )
    out = tmp_path / "out"
    rc = prepare(
        prepare_CVC_ClinicDB, "--clinicdb_root", root, out, 24, "--labeled_fraction", "0.3"
    )
    assert rc == 0
    check_prepared(out, 10, 24)
    # Natural order in the CSVs: 2 before 10.
    train_ids = read_split(out, "train")
    assert train_ids == sorted(train_ids, key=int)
    labeled = read_split(out, "train_labeled")
    unlabeled = [Path(p).stem for p in pd.read_csv(out / "train_unlabeled.csv")["img_path"]]
    assert len(labeled) == 2 and sorted(labeled + unlabeled, key=int) == train_ids
    assert len(load_unlabeled_csv(out / "train_unlabeled.csv")) == 5
    # D_U's masks, held out for Phase 2's diagnostics: the same images, each with its mask.
    heldout = load_heldout_masks(out / "train_unlabeled_heldout.csv")
    assert [p.stem for p in heldout.image_paths] == unlabeled
    assert [p.stem for p in heldout.mask_paths] == unlabeled
    assert all(p.parent.name == "masks" and p.is_file() for p in heldout.mask_paths)
    # A folder prepared before the held-out CSV existed gets it on a rerun, nothing else.
    (out / "train_unlabeled_heldout.csv").unlink()
    assert (
        prepare(prepare_CVC_ClinicDB, "--clinicdb_root", root, out, 24, "--labeled_fraction", "0.3")
        == 0
    )
    assert (
        load_heldout_masks(out / "train_unlabeled_heldout.csv").image_paths == heldout.image_paths
    )


# --------------------------------------------------------------------------------------
# Any images folder + masks folder
# --------------------------------------------------------------------------------------


MASK_NAMES = {
    # image stem -> (mask file name, encoding)
    "a1": ("a1_segmentation.png", "palette"),
    "a2": ("a2_lesion.png", "01"),
    "a3": ("a3mask.png", "rgb"),
    "a4": ("pa4.jpg", "jpeg"),
    "a5": ("A5.PNG", "0255"),
    "a6_orig": ("a6_contour.png", "0255"),
}


@pytest.fixture
def pairs_root(tmp_path):
    root = tmp_path / "MySet"
    for i, (stem, (mask_name, encoding)) in enumerate(MASK_NAMES.items()):
        write_pair(
            root / "images" / f"{stem}.jpg", root / "masks" / mask_name, seed=i, encoding=encoding
        )
    (root / "images" / "notes.txt").write_text("not an image")
    return root


def test_folder_pairs_match_affixes_and_binarise_every_encoding(pairs_root, tmp_path):
    layout = prepare_folder_pairs.find_folder_pairs(root=pairs_root)
    got = {s.image_path.stem: s.mask_path.name for s in layout.samples}
    assert got == {stem: name for stem, (name, _) in MASK_NAMES.items()}
    out = tmp_path / "out"
    before = snapshot(pairs_root)
    assert (
        prepare(prepare_folder_pairs, "--root", pairs_root, out, 20, "--split_sizes", "4,1,1") == 0
    )
    assert snapshot(pairs_root) == before
    check_prepared(out, 6, 20)
    # Each written mask is the drawn shape, resized by nearest neighbour.
    for i, (stem, _) in enumerate(MASK_NAMES.items()):
        sid = stem
        written = cv2.imread(str(out / "masks" / f"{sid}.png"), cv2.IMREAD_UNCHANGED)
        expected = resize_mask(_shape(i, 30, 40), 20)
        agree = (written == expected).mean()
        assert agree > 0.97, (stem, agree)  # JPEG noise may flip a few boundary pixels


def test_folder_pairs_default_output_and_unmatched(pairs_root, tmp_path, monkeypatch, capsys):
    write_pair(pairs_root / "images" / "lonely.jpg", tmp_path / "elsewhere.png", seed=99)
    cv2.imwrite(str(pairs_root / "masks" / "orphan_mask.png"), np.zeros((30, 40), np.uint8))
    monkeypatch.chdir(tmp_path)
    args = ["--images_dir", str(pairs_root / "images"), "--masks_dir", str(pairs_root / "masks")]
    assert prepare_folder_pairs.main([*args, "--split_sizes", "4,1,1", *QUIET]) == 2
    err = capsys.readouterr().err
    assert "lonely.jpg" in err and "orphan_mask.png" in err
    assert (
        prepare_folder_pairs.main([*args, "--split_sizes", "4,1,1", "--allow-unpaired", *QUIET])
        == 0
    )
    # Default folder named after the data set.
    out = tmp_path / "prepare_datasets" / "MySet_segs_metadata"
    assert len(load_labeled_csv(out / "train.csv")) == 4


def test_custom_affix_rules(tmp_path):
    images = [tmp_path / "i" / f"case{i}.png" for i in range(3)]
    masks = [tmp_path / "m" / f"GT-case{i}-label.png" for i in range(3)]
    assert not match_by_stem(images, masks).samples
    layout = match_by_stem(images, masks, mask_prefixes=["GT-"], mask_suffixes=["-label"])
    assert [(s.image_path.name, s.mask_path.name) for s in layout.samples] == [
        (f"case{i}.png", f"GT-case{i}-label.png") for i in range(3)
    ]
    # Two masks that fit one image: the exact name wins.
    layout = match_by_stem([tmp_path / "x.png"], [tmp_path / "x_mask.png", tmp_path / "x.bmp"])
    assert layout.samples[0].mask_path.name == "x.bmp"


def test_images_and_masks_in_one_folder(tmp_path):
    folder = tmp_path / "mixed"
    for i in range(3):
        write_pair(folder / f"case{i}.jpg", folder / f"case{i}_mask.png", seed=i)
    write_pair(folder / "pcase.jpg", tmp_path / "elsewhere.png", seed=7)  # no mask of its own
    layout = prepare_folder_pairs.find_folder_pairs(folder, folder)
    assert [(s.image_path.name, s.mask_path.name) for s in layout.samples] == [
        (f"case{i}.jpg", f"case{i}_mask.png") for i in range(3)
    ]
    assert [p.name for p in layout.unmatched_images] == ["pcase.jpg"]
    assert not layout.unmatched_masks


def test_output_folder_refused_reused_and_overwritten(pairs_root, tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "--root",
        str(pairs_root),
        "--output_dir",
        str(out),
        "--image_size",
        "20",
        "--split_sizes",
        "4,1,1",
        *QUIET,
    ]
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    assert prepare_folder_pairs.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert prepare_folder_pairs.main([*args, "--overwrite"]) == 0
    assert (out / "thesis.docx").read_text() == "precious", "only our own files are ever deleted"
    mtimes = snapshot(out)
    assert prepare_folder_pairs.main(args) == 0  # same preparation: left as is
    assert snapshot(out) == mtimes
    assert prepare_folder_pairs.main([*args, "--seed", "3"]) == 2  # a different split
    assert prepare_folder_pairs.main([*args, "--seed", "3", "--overwrite"]) == 0
    # Inside the source folder: refused.
    inside = ["--root", str(pairs_root), "--output_dir", str(pairs_root / "prepared"), *QUIET]
    assert prepare_folder_pairs.main(inside) == 2
    assert "inside the source" in capsys.readouterr().err
    # The sources inside the output folder: refused even with --overwrite, whose images/
    # and masks/ would be the source files themselves.
    before = snapshot(pairs_root)
    around = [
        "--images_dir", str(pairs_root / "images"), "--masks_dir", str(pairs_root / "masks"),
        "--output_dir", str(pairs_root), "--image_size", "20", "--split_sizes", "4,1,1",
        "--overwrite", *QUIET,
    ]  # fmt: skip
    assert prepare_folder_pairs.main(around) == 2
    assert "lies inside --output_dir" in capsys.readouterr().err
    assert snapshot(pairs_root) == before


def test_split_file_names_files_whose_ids_were_made_safe(tmp_path):
    """`lesion 0.png` is sample `lesion_0`; a split file naming the file still finds it."""
    root = tmp_path / "spaced"
    for i in range(6):
        write_pair(root / "images" / f"lesion {i}.png", root / "masks" / f"lesion {i}.png", seed=i)
    lists = tmp_path / "lists"
    lists.mkdir()
    for split, ids in (("train", [0, 1, 2, 3]), ("val", [4]), ("test", [5])):
        (lists / f"{split}.txt").write_text("".join(f"/old/disk/lesion {i}.png\n" for i in ids))
    out = tmp_path / "out"
    args = ["--root", str(root), "--output_dir", str(out), "--image_size", "20"]
    assert prepare_folder_pairs.main([*args, "--split_from", str(lists), *QUIET]) == 0
    assert read_split(out, "val") == ["lesion_4"] and read_split(out, "test") == ["lesion_5"]


def test_mismatched_mask_size_names_both_files(tmp_path, capsys):
    root = tmp_path / "set"
    for i in range(4):
        write_pair(root / "images" / f"{i}.png", root / "masks" / f"{i}.png", seed=i)
    cv2.imwrite(str(root / "masks" / "2.png"), np.zeros((10, 10), np.uint8))
    rc = prepare_folder_pairs.main(
        ["--root", str(root), "--output_dir", str(tmp_path / "o"), "--split_sizes", "2,1,1", *QUIET]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "masks/2.png" in err.replace("\\", "/") and "images/2.png" in err.replace("\\", "/")


def test_keep_aspect_pads_and_image_resize_modes():
    image = np.full((20, 40, 3), 200, np.uint8)
    padded = resize_image(image, 16, keep_aspect=True)
    assert padded.shape == (16, 16, 3)
    assert (padded[:4] == 0).all() and (padded[12:] == 0).all() and (padded[4:12] == 200).all()
    mask = np.ones((20, 40), np.uint8)
    m = resize_mask(mask, 16, keep_aspect=True)
    assert set(np.unique(m).tolist()) == {0, 255} and m[4:12].all() and not m[:4].any()
    assert resize_image(image, 16, interpolation="bilinear").shape == (16, 16, 3)


# --------------------------------------------------------------------------------------
# Splitting arithmetic
# --------------------------------------------------------------------------------------


def test_stratified_order_prefixes_stay_proportional():
    groups = ["a"] * 700 + ["b"] * 250 + ["c"] * 50
    order = stratified_order(groups, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(1000))
    labels = np.array(groups)[order]
    for n in (10, 37, 100, 333, 999):
        for g, p in (("a", 0.7), ("b", 0.25), ("c", 0.05)):
            assert abs((labels[:n] == g).sum() - p * n) <= 1.5
    again = stratified_order(groups, np.random.default_rng(0))
    assert (again == order).all()


def test_split_counts():
    assert split_counts(200, (140, 20, 40)) == (140, 20, 40)
    assert split_counts(10, (0.7, 0.1, 0.2)) == (7, 1, 2)
    with pytest.raises(ValueError, match="sums to 199"):
        split_counts(200, (140, 20, 39))
    with pytest.raises(ValueError, match="empty"):
        split_counts(5, (0.9, 0.05, 0.05))


# --------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------


def test_scripts_run_by_path_from_any_folder(tmp_path):
    """`python <path>/prepare_PH2.py --help` from another folder, with no PYTHONPATH."""
    scripts = [
        p
        for folder in ("prepare_datasets", "prepare_unsupervised_images")
        for p in sorted((ROOT / folder).glob("*.py"))
        if 'if __name__ == "__main__":' in p.read_text()
    ] + [ROOT / "benchmarks" / "resize_throughput.py"]
    assert len(scripts) >= 12
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    runs = {
        p: subprocess.Popen(
            [sys.executable, str(p), "--help"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in scripts
    }
    failed = {}
    for p, run in runs.items():
        out, err = run.communicate(timeout=300)
        if run.returncode != 0 or "usage:" not in out:
            failed[p.relative_to(ROOT).as_posix()] = err.strip().splitlines()[-1:]
    assert not failed, failed


# --------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_cvc_clinicdb_folder_pairs(tmp_path):
    root = SHARED_DATA / "CVC-ClinicDB"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (../shared/data beside the project)")
    out = tmp_path / "clinic"
    rc = prepare_folder_pairs.main(
        ["--root", str(root), "--output_dir", str(out), "--labeled_fraction", "0.1", *QUIET]
    )
    assert rc == 0
    assert len(list((out / "masks").glob("*.png"))) == 609
    for path in (out / "masks").glob("*.png"):
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert raw.shape == (224, 224) and set(np.unique(raw).tolist()) <= {0, 255}, path
    sizes = {}
    for split in SPLITS:
        images, masks = load_labeled_arrays(load_labeled_csv(out / f"{split}.csv"), image_size=None)
        assert images.shape[1:] == (224, 224, 3) and masks.max() == 1
        sizes[split] = len(images)
    assert sizes == {"train": 426, "val": 61, "test": 122}
    assert len(load_labeled_csv(out / "train_labeled.csv")) == 43
    assert len(load_unlabeled_csv(out / "train_unlabeled.csv")) == 383
    assert (out / MANIFEST.name).is_file()
