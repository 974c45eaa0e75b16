"""The one pipeline behind every labeled-set preparer: resize, pair, split, write, list.

Each `prepare_<NAME>.py` is a thin layer that turns its data set's distributed layout into
a `Layout` (a list of `Sample`: id, image path, mask path, stratification group); this
module does the rest, identically for every data set:

* `resize_pair_to_square`: image by area averaging (bilinear when enlarging, or on request), mask by
  nearest neighbour after `data.io.read_mask` has binarised it whatever its encoding (0/1,
  0/255, RGB, palette, JPEG noise); to a square, or keeping the aspect ratio and padding
  with zeros. Masks are written as PNG 0/255.
* a split, either generated (seeded, stratified by group) or read from the user's file;
* optionally a labeled fraction carved from the training split (D_L and D_U);
* `images/`, `masks/`, `train.csv`, `val.csv`, `test.csv` (`image_path,mask_path`, paths
  relative to the CSV's folder) and, with a labeled fraction, `train_labeled.csv` and
  `train_unlabeled.csv` (`img_path`), all checked with data.io's loaders once written.

`prepare_manifest.json` records what a folder holds. A folder holding the same preparation
is left as it is; one holding anything else is refused unless ``--overwrite``, and even
then only files that an earlier preparation listed are deleted. Source folders are only
read, and an output folder inside a source folder is refused (a rerun would read it back).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from data.io import DataError, load_labeled_csv, load_unlabeled_csv, read_image, read_mask

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")
MANIFEST_NAME = "prepare_manifest.json"
GENERATOR = "prepare_datasets"
# Bump when the written pixels or CSVs change, so that an old folder is not silently reused.
FORMAT_VERSION = 1
# The release's seed for data sampling (its ISIC subsets); used for every split here.
DEFAULT_SEED = 8888
DEFAULT_IMAGE_SIZE = 224
INTERPOLATIONS = ("area", "bilinear")
# How many individual problems one message lists before summarising the rest.
_MAX_LISTED = 10

# Affixes tried, in this order, when a mask's name differs from its image's: the spellings
# of the paper's data sets (PH2 `_lesion`, SCD `_contour`, DermoFit `mask`, ISIC
# `_segmentation`, CVC-ColonDB `p` prefix) and common ones. Matching ignores case.
DEFAULT_MASK_SUFFIXES = (
    "",
    "_lesion",
    "_contour",
    "mask",
    "_mask",
    "-mask",
    "_segmentation",
    "_seg",
    "_gt",
    "_label",
)
DEFAULT_MASK_PREFIXES = ("", "p", "mask_", "gt_")
DEFAULT_IMAGE_SUFFIXES = ("", "_orig", "_image")
DEFAULT_IMAGE_PREFIXES = ("",)


# --------------------------------------------------------------------------------------
# Resizing (shared with prepare_unsupervised_images)
# --------------------------------------------------------------------------------------


def content_size(height: int, width: int, size: int, keep_aspect: bool) -> tuple[int, int]:
    """(h, w) the picture takes in a `size` square: all of it, or the aspect-kept fit."""
    if not keep_aspect:
        return size, size
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _pad_to_square(array: np.ndarray, size: int) -> np.ndarray:
    """Centre `array` on a zero `size` square (zero: black image, background mask)."""
    h, w = array.shape[:2]
    out = np.zeros((size, size, *array.shape[2:]), dtype=array.dtype)
    top, left = (size - h) // 2, (size - w) // 2
    out[top : top + h, left : left + w] = array
    return out


def resize_image(
    image: np.ndarray, size: int, keep_aspect: bool = False, interpolation: str = "area"
) -> np.ndarray:
    """Resize an image into a `size` square (area averaging when shrinking, else bilinear)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    h, w = image.shape[:2]
    out_h, out_w = content_size(h, w, size, keep_aspect)
    if (out_h, out_w) != (h, w):
        # Area averaging is the alias-free choice when shrinking; it has no meaning when
        # enlarging, where it degenerates to nearest neighbour.
        shrinking = out_h < h and out_w < w
        flag = cv2.INTER_AREA if interpolation == "area" and shrinking else cv2.INTER_LINEAR
        image = cv2.resize(image, (out_w, out_h), interpolation=flag)
    return _pad_to_square(image, size) if keep_aspect else image


def resize_mask(mask: np.ndarray, size: int, keep_aspect: bool = False) -> np.ndarray:
    """Resize a {0, 1} mask by nearest neighbour into a `size` square; return it as 0/255.

    Nearest neighbour picks source pixels, so binarising before or after it gives the same
    mask; binarising first (in `data.io.read_mask`) lets every encoding share one rule.
    """
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    h, w = mask.shape[:2]
    out_h, out_w = content_size(h, w, size, keep_aspect)
    if (out_h, out_w) != (h, w):
        mask = cv2.resize(mask, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    if keep_aspect:
        mask = _pad_to_square(mask, size)
    return mask * np.uint8(255)


def resize_pair_to_square(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    keep_aspect: bool = False,
    interpolation: str = "area",
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an RGB image and its {0, 1} mask alike; the mask comes back 0/255."""
    return resize_image(image, size, keep_aspect, interpolation), resize_mask(
        mask, size, keep_aspect
    )


def load_resized_pair(
    image_path: Path,
    mask_path: Path,
    size: int,
    keep_aspect: bool = False,
    interpolation: str = "area",
) -> tuple[np.ndarray, np.ndarray]:
    """Decode, check and resize one pair; a mask whose size differs from its image is an
    error naming both files (resizing them apart would misalign the label)."""
    image = read_image(image_path)
    mask = read_mask(mask_path)
    if image.shape[:2] != mask.shape[:2]:
        raise DataError(
            f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image size "
            f"{image.shape[1]}x{image.shape[0]}: {mask_path} vs {image_path}"
        )
    return resize_pair_to_square(image, mask, size, keep_aspect, interpolation)


def write_image(path: Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB (or grey) uint8 array; the format follows the file extension."""
    array = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    )
    if not cv2.imwrite(str(path), array, params):
        raise DataError(f"cannot write {path}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file whole or not at all (a crash leaves the old file or none)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_tables(
    tables: dict[str, pd.DataFrame], output_dir: Path, overwrite: bool = False
) -> None:
    """Write `<name>.csv` per table. An existing CSV of that name with other contents is
    refused unless `overwrite`, before anything is written; identical ones stay as they are."""
    texts = {name: t.to_csv(index=False, lineterminator="\n") for name, t in tables.items()}
    differ = [
        name
        for name, text in texts.items()
        if (output_dir / f"{name}.csv").exists()
        and (output_dir / f"{name}.csv").read_text() != text
    ]
    if differ and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds different {', '.join(f'{n}.csv' for n in differ)}; "
            "pass --overwrite to replace them, or choose another --output_dir"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        path = output_dir / f"{name}.csv"
        if not path.exists() or path.read_text() != text:
            write_text_atomic(path, text)


def path_for_csv(target: Path, csv_dir: Path) -> str:
    """A CSV path entry: relative to the CSV's folder when inside it (the folder can move
    as a whole), else absolute (a relative `../` path would break when the CSV moves)."""
    target = Path(os.path.abspath(target))
    csv_dir = Path(os.path.abspath(csv_dir))
    try:
        return target.relative_to(csv_dir).as_posix()
    except ValueError:
        return target.as_posix()


# --------------------------------------------------------------------------------------
# Samples, layouts and pairing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One labeled pair; `group` (a diagnosis, a class) stratifies generated splits."""

    sample_id: str
    image_path: Path
    mask_path: Path
    group: str | None = None


@dataclass
class Layout:
    """What a data set's folder yields: pairs, and files that found no partner."""

    samples: list[Sample]
    unmatched_images: list[Path] = field(default_factory=list)
    unmatched_masks: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: Path | None = None
    source_dirs: list[Path] = field(default_factory=list)


def _listing(items: Sequence[object], limit: int = _MAX_LISTED) -> str:
    shown = "\n  ".join(str(x) for x in items[:limit])
    more = len(items) - limit
    return "  " + shown + (f"\n  ... and {more} more" if more > 0 else "")


def require_dir(path: str | Path, argument: str) -> Path:
    """The folder an argument names, or a DataError naming the argument."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{argument} {p} does not exist")
    if not p.is_dir():
        raise DataError(f"{argument} {p} is not a folder")
    return p


def is_image_file(path: Path) -> bool:
    # Hidden files include macOS `._name` resource forks, which carry an image extension.
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in a folder (sorted; hidden files and `__MACOSX` folders skipped)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in found
        if p.is_file() and is_image_file(p) and "__MACOSX" not in p.relative_to(folder).parts
    )


def find_named_dir(root: Path, names: Iterable[str], max_depth: int = 3) -> Path | None:
    """The shallowest folder under `root` (or `root` itself) whose name is one of `names`
    (case-insensitive); ties go to the alphabetically first path."""
    wanted = {n.casefold() for n in names}
    level = [root]
    for _ in range(max_depth + 1):
        hits = sorted(p for p in level if p.name.casefold() in wanted)
        if hits:
            return hits[0]
        level = sorted(c for p in level for c in p.iterdir() if c.is_dir() and c.name != "__MACOSX")
        if not level:
            break
    return None


def find_folder_pair(
    root: Path, image_names: Sequence[str], mask_names: Sequence[str], max_depth: int = 3
) -> tuple[Path, Path] | None:
    """The shallowest sibling pair (image folder, mask folder) under `root`, e.g.
    (`Original`, `Ground Truth`) or (`images`, `masks`); names compare case-insensitively."""
    img_wanted = [n.casefold() for n in image_names]
    mask_wanted = [n.casefold() for n in mask_names]
    level = [root]
    for _ in range(max_depth + 1):
        for parent in level:
            children = {c.name.casefold(): c for c in parent.iterdir() if c.is_dir()}
            img = next((children[n] for n in img_wanted if n in children), None)
            msk = next((children[n] for n in mask_wanted if n in children), None)
            if img is not None and msk is not None:
                return img, msk
        level = sorted(c for p in level for c in p.iterdir() if c.is_dir() and c.name != "__MACOSX")
        if not level:
            break
    return None


def natural_key(text: str) -> list[object]:
    """Sort key that puts `2` before `10` (frame numbers, IMD ids)."""
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", text)]


def safe_id(text: str) -> str:
    """A file-name-safe sample id (letters, digits, `.`, `_`, `-`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "sample"


def unique_ids(stems: Sequence[str], paths: Sequence[Path]) -> list[str]:
    """Ids from stems; stems shared by several files get their parent folders' names
    prefixed (innermost first) until they differ."""
    ids = [safe_id(s) for s in stems]
    for depth in range(1, 8):
        counts = Counter(ids)
        clashes = [i for i, x in enumerate(ids) if counts[x] > 1]
        if not clashes:
            return ids
        for i in clashes:
            parents = [safe_id(p.name) for p in paths[i].parents][:depth]
            ids[i] = "_".join([*reversed(parents), safe_id(stems[i])])
    counts = Counter(ids)
    raise DataError(
        "cannot give these files distinct ids:\n"
        + _listing([str(paths[i]) for i, x in enumerate(ids) if counts[x] > 1])
    )


def with_unique_ids(layout: Layout, stem_of: Callable[[Sample], str]) -> Layout:
    """The layout with ids `stem_of(sample)`, made unique by folder names where shared."""
    ids = unique_ids([stem_of(s) for s in layout.samples], [s.image_path for s in layout.samples])
    layout.samples = [replace(s, sample_id=i) for s, i in zip(layout.samples, ids)]
    return layout


def _strip_affixes(stem: str, prefixes: Sequence[str], suffixes: Sequence[str]) -> list[str]:
    """`stem` and every core left by removing one prefix and one suffix (order of trial)."""
    low = stem.casefold()
    cores = []
    for pre in prefixes:
        for suf in suffixes:
            pre_f, suf_f = pre.casefold(), suf.casefold()
            if len(pre_f) + len(suf_f) >= len(low):
                continue
            if low.startswith(pre_f) and low.endswith(suf_f):
                core = low[len(pre_f) : len(low) - len(suf_f)]
                if core not in cores:
                    cores.append(core)
    return cores


def match_by_stem(
    images: Sequence[Path],
    masks: Sequence[Path],
    mask_prefixes: Sequence[str] = DEFAULT_MASK_PREFIXES,
    mask_suffixes: Sequence[str] = DEFAULT_MASK_SUFFIXES,
    image_prefixes: Sequence[str] = DEFAULT_IMAGE_PREFIXES,
    image_suffixes: Sequence[str] = DEFAULT_IMAGE_SUFFIXES,
    group_of: Callable[[Path], str | None] | None = None,
) -> Layout:
    """Pair images with masks by file name (case-insensitive), trying affixes in order.

    For each image, the cores of its name (itself, then with each image affix removed)
    are tried against mask names `prefix + core + suffix`, the exact name first; the first
    existing mask wins. Two files with the same stem in one list, or a mask claimed by two
    images, are errors naming the files.
    """
    for kind, files in (("images", images), ("masks", masks)):
        by_stem: dict[str, list[Path]] = {}
        for p in files:
            by_stem.setdefault(p.stem.casefold(), []).append(p)
        dupes = [f"{', '.join(map(str, ps))}" for ps in by_stem.values() if len(ps) > 1]
        if dupes:
            raise DataError(f"{kind} sharing one name (which is meant?):\n" + _listing(dupes))
    mask_by_stem = {p.stem.casefold(): p for p in masks}
    image_prefixes = list(dict.fromkeys(["", *image_prefixes]))
    image_suffixes = list(dict.fromkeys(["", *image_suffixes]))
    mask_prefixes = list(dict.fromkeys(["", *mask_prefixes]))
    mask_suffixes = list(dict.fromkeys(["", *mask_suffixes]))

    claimed: dict[Path, Path] = {}
    pairs: list[tuple[Path, Path]] = []
    unmatched_images: list[Path] = []
    clashes: list[str] = []
    for image in images:
        found = None
        for core in _strip_affixes(image.stem, image_prefixes, image_suffixes):
            for pre in mask_prefixes:
                for suf in mask_suffixes:
                    candidate = mask_by_stem.get(f"{pre}{core}{suf}".casefold())
                    if candidate is not None:
                        found = candidate
                        break
                if found:
                    break
            if found:
                break
        if found is None:
            unmatched_images.append(image)
        elif found in claimed:
            clashes.append(f"{found} matches both {claimed[found]} and {image}")
        else:
            claimed[found] = image
            pairs.append((image, found))
    if clashes:
        raise DataError("masks matched by two images:\n" + _listing(clashes))
    ids = unique_ids([img.stem for img, _ in pairs], [img for img, _ in pairs])
    samples = [
        Sample(sid, img, msk, group_of(img) if group_of else None)
        for sid, (img, msk) in zip(ids, pairs)
    ]
    unmatched_masks = [m for m in masks if m not in claimed]
    return Layout(samples, unmatched_images, unmatched_masks)


def check_layout(layout: Layout, allow_unpaired: bool, log: Callable[[str], None] = print) -> None:
    """Report unpaired files (an error unless allowed), id clashes, and an empty layout."""
    for note in layout.notes:
        log(f"note: {note}")
    problems = []
    if layout.unmatched_images:
        problems.append(
            f"{len(layout.unmatched_images)} image(s) without a mask:\n"
            + _listing(layout.unmatched_images)
        )
    if layout.unmatched_masks:
        problems.append(
            f"{len(layout.unmatched_masks)} mask(s) without an image:\n"
            + _listing(layout.unmatched_masks)
        )
    if problems:
        text = "\n".join(problems)
        if not allow_unpaired:
            raise DataError(text + "\npass --allow-unpaired to leave these files out")
        log(f"warning: left out (--allow-unpaired):\n{text}")
    counts = Counter(s.sample_id for s in layout.samples)
    dupes = sorted(k for k, v in counts.items() if v > 1)
    if dupes:
        raise DataError("sample ids used twice:\n" + _listing(dupes))
    if not layout.samples:
        where = f" in {layout.source}" if layout.source else ""
        raise DataError(f"no image/mask pairs found{where}")


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------


def stratified_order(groups: Sequence[object], rng: np.random.Generator) -> np.ndarray:
    """A random order of indices in which every prefix is stratified by group.

    Each group's members are shuffled; the j-th member of a group of n gets the key
    (j + 0.5) / n and indices are sorted by key (ties by group). A prefix of any length
    then holds round(t * n_g) members of each group for one threshold t: within about one
    item of proportional, so prefixes are nested stratified samples.
    """
    labels = ["" if g is None else str(g) for g in groups]
    uniq = sorted(set(labels))
    rank = {g: r for r, g in enumerate(uniq)}
    labels_arr = np.array(labels, dtype=object)
    keys = np.empty(len(labels), dtype=np.float64)
    for g in uniq:
        members = rng.permutation(np.flatnonzero(labels_arr == g))
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    group_rank = np.array([rank[g] for g in labels], dtype=np.int64)
    return np.lexsort((group_rank, keys))


def parse_split_sizes(text: str) -> tuple[float, float, float]:
    """`"140,20,40"` (counts) or `"0.7,0.1,0.2"` (fractions) for train, val, test."""
    try:
        parts = [float(x) for x in text.replace(" ", "").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(p < 0 for p in parts):
        raise DataError(
            f"--split_sizes {text!r}: expected three non-negative numbers train,val,test "
            "(counts such as 140,20,40 or fractions such as 0.7,0.1,0.2)"
        )
    return parts[0], parts[1], parts[2]


def split_counts(n: int, sizes: Sequence[float]) -> tuple[int, int, int]:
    """Counts for train, val, test from counts (must sum to n) or fractions (sum to 1)."""
    if all(float(s).is_integer() for s in sizes) and sum(sizes) > 1:
        counts = tuple(int(s) for s in sizes)
        if sum(counts) != n:
            raise DataError(
                f"--split_sizes {','.join(map(str, counts))} sums to {sum(counts)} but "
                f"{n} pairs were found; give counts that sum to {n}, or fractions"
            )
    else:
        if abs(sum(sizes) - 1.0) > 1e-6:
            raise DataError(f"--split_sizes fractions {list(sizes)} do not sum to 1")
        n_val, n_test = round(sizes[1] * n), round(sizes[2] * n)
        counts = (n - n_val - n_test, n_val, n_test)
    if min(counts) < 1:
        raise DataError(
            f"split {counts} (train, val, test) of {n} pairs leaves a split empty; the "
            "training scripts need all three"
        )
    return counts  # type: ignore[return-value]


def generate_split(
    samples: Sequence[Sample], counts: tuple[int, int, int], seed: int
) -> dict[str, list[str]]:
    """Seeded split stratified by group: test drawn first, then val from the rest."""
    rng = np.random.default_rng(seed)
    ids = [s.sample_id for s in samples]
    groups = [s.group for s in samples]
    n_train, n_val, n_test = counts
    order = stratified_order(groups, rng)
    test = [ids[i] for i in order[:n_test]]
    rest = [int(i) for i in order[n_test:]]
    order2 = stratified_order([groups[i] for i in rest], rng)
    val = [ids[rest[i]] for i in order2[:n_val]]
    train = [ids[rest[i]] for i in order2[n_val:]]
    assert len(train) == n_train
    return {
        "train": sorted(train, key=natural_key),
        "val": sorted(val, key=natural_key),
        "test": sorted(test, key=natural_key),
    }


_VALUE_SPLIT = re.compile(r"[\\/]")


def extract_id(value: str, known: set[str], id_pattern: str | None = None) -> str:
    """The sample id a split file's entry names: a bare id, a file name or a path from
    anywhere (only its name counts), e.g. `/old/machine/PH2/IMD003.bmp` -> `IMD003`."""
    name = _VALUE_SPLIT.split(value.strip())[-1]
    if id_pattern:
        m = re.search(id_pattern, name) or re.search(id_pattern, value)
        if m:
            return m.group(0)
    stem = name
    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
        stem = Path(name).stem
    if stem in known:
        return stem
    folded = {k.casefold(): k for k in known}
    for core in _strip_affixes(
        stem,
        [*DEFAULT_MASK_PREFIXES, *DEFAULT_IMAGE_PREFIXES],
        [*DEFAULT_MASK_SUFFIXES, *DEFAULT_IMAGE_SUFFIXES],
    ):
        # Sample ids are file-name-safe (`safe_id`): `lesion 0.png` is sample `lesion_0`.
        for candidate in (core, safe_id(core)):
            if candidate.casefold() in folded:
                return folded[candidate.casefold()]
    return stem


def _split_of_name(path: Path) -> str | None:
    tokens = set(re.split(r"[^a-z0-9]+", path.stem.casefold()))
    if tokens & {"labeled", "unlabeled"}:
        return None  # our own D_L / D_U files, not a split
    if "train" in tokens or "training" in tokens:
        return "train"
    if tokens & {"val", "valid", "validation"}:
        return "val"
    if "test" in tokens or "testing" in tokens:
        return "test"
    return None


_ID_COLUMNS = ("image_path", "img_path", "id", "image_id", "image_name", "name", "image")


def _entries_of_file(path: Path) -> list[str]:
    """The entries of one split list: a CSV's id/path column, or one entry per line."""
    if path.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read split file {path}: {exc}") from None
        column = next((c for c in _ID_COLUMNS if c in df.columns), None)
        if column is None:
            # A header-less list: the header row is itself an entry.
            return [str(df.columns[0]), *df.iloc[:, 0].tolist()]
        return [v for v in df[column].tolist() if v.strip()]
    lines = path.read_text().splitlines()
    return [ln.split(",")[0].strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def read_split_file(
    path: str | Path, samples: Sequence[Sample], id_pattern: str | None = None
) -> dict[str, list[str]]:
    """A user-given split, followed exactly.

    `path` is either a folder with one list per split (file names containing `train`,
    `val` and `test`: the release's CSVs, whose `image_path` may point anywhere, or text
    files with one id per line), or one CSV with a `split` column and an id column. An
    id that names no pair, or one listed in two splits, is an error naming it and its file.
    """
    path = Path(path).expanduser()
    known = {s.sample_id for s in samples}
    entries: dict[str, list[tuple[str, Path]]] = {s: [] for s in SPLITS}
    if path.is_dir():
        found: dict[str, list[Path]] = {s: [] for s in SPLITS}
        for f in sorted(path.iterdir()):
            split = _split_of_name(f) if f.suffix.lower() in {".csv", ".txt"} else None
            if split:
                found[split].append(f)
        missing = [s for s in SPLITS if not found[s]]
        if missing:
            raise DataError(
                f"--split_from {path}: no list for split(s) {missing} (expected files such "
                "as train.csv, val.csv, test.csv or train.txt, val.txt, test.txt)"
            )
        many = [f"{s}: {[f.name for f in fs]}" for s, fs in found.items() if len(fs) > 1]
        if many:
            raise DataError(f"--split_from {path}: several lists for one split: {many}")
        for split in SPLITS:
            f = found[split][0]
            entries[split] = [(v, f) for v in _entries_of_file(f)]
    elif path.is_file():
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read split file {path}: {exc}") from None
        column = next((c for c in _ID_COLUMNS if c in df.columns), None)
        if "split" not in df.columns or column is None:
            raise DataError(
                f"--split_from {path}: a single file needs a `split` column and an id column "
                f"({', '.join(_ID_COLUMNS)}); it has {list(df.columns)}. For one list per "
                "split, pass a folder"
            )
        df["split"] = df["split"].str.strip().str.lower()
        bad = sorted(set(df["split"]) - set(SPLITS))
        if bad:
            raise DataError(f"--split_from {path}: unknown split name(s) {bad}; use {SPLITS}")
        for value, split in zip(df[column], df["split"]):
            entries[split].append((value, path))
    else:
        raise DataError(f"--split_from {path} does not exist")

    split_ids: dict[str, list[str]] = {}
    unknown: list[str] = []
    seen: dict[str, str] = {}
    twice: list[str] = []
    for split in SPLITS:
        ids: list[str] = []
        for value, f in entries[split]:
            sid = extract_id(value, known, id_pattern)
            if sid not in known:
                unknown.append(f"{value!r} in {f} ({split})")
            elif sid in seen and seen[sid] != split:
                twice.append(f"{sid} in {seen[sid]} and {split} ({f})")
            elif sid not in seen:
                seen[sid] = split
                ids.append(sid)
        split_ids[split] = sorted(ids, key=natural_key)
    if unknown:
        raise DataError(
            f"--split_from {path} names {len(unknown)} image(s) that do not exist in the "
            "data set:\n" + _listing(unknown)
        )
    if twice:
        raise DataError(f"--split_from {path} lists images in two splits:\n" + _listing(twice))
    empty = [s for s in SPLITS if not split_ids[s]]
    if empty:
        raise DataError(f"--split_from {path}: split(s) {empty} are empty")
    return split_ids


def carve_labeled(
    train_ids: Sequence[str],
    groups: dict[str, str | None],
    seed: int,
    fraction: float | None = None,
    count: int | None = None,
) -> tuple[list[str], list[str]]:
    """D_L and D_U from a training split: a seeded, stratified labeled subset and the rest.

    Its generator is seeded apart from the split's, so asking for another fraction leaves
    the split alone; fractions are nested (10% holds 5%'s images) for one seed.
    """
    n = len(train_ids)
    if count is None:
        if fraction is None or not 0 < fraction < 1:
            raise DataError(f"--labeled_fraction must be in (0, 1), got {fraction}")
        count = max(1, round(fraction * n))
    if not 1 <= count < n:
        raise DataError(
            f"a labeled subset of {count} leaves no unlabeled image in a training split of {n}"
        )
    rng = np.random.default_rng([seed, 1])
    ids = sorted(train_ids, key=natural_key)
    order = stratified_order([groups.get(i) for i in ids], rng)
    labeled = sorted((ids[i] for i in order[:count]), key=natural_key)
    unlabeled = sorted((ids[i] for i in order[count:]), key=natural_key)
    return labeled, unlabeled


# --------------------------------------------------------------------------------------
# Writing a prepared folder
# --------------------------------------------------------------------------------------


def _read_manifest(output_dir: Path) -> dict | None:
    try:
        manifest = json.loads((output_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        return None
    return manifest if isinstance(manifest.get("files"), list) else None


def _own_file(output_dir: Path, rel: object) -> Path | None:
    """A manifest entry as a path inside `output_dir`, or None if it points elsewhere."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return None
    return output_dir / rel


def _has_contents(output_dir: Path) -> bool:
    return output_dir.is_dir() and any(not p.name.startswith(".") for p in output_dir.iterdir())


def is_inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it (neither need exist)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def _describe(output_dir: Path, manifest: dict | None) -> str:
    if manifest is not None:
        return f"a different preparation ({manifest.get('dataset')}, {manifest.get('settings')})"
    names = sorted(p.name for p in output_dir.iterdir() if not p.name.startswith("."))
    return (
        "files of another origin ("
        + ", ".join(names[:5])
        + (", ..." if len(names) > 5 else "")
        + ")"
    )


def prepare_labeled_dataset(
    layout: Layout,
    output_dir: str | Path,
    *,
    name: str,
    image_size: int = DEFAULT_IMAGE_SIZE,
    keep_aspect: bool = False,
    interpolation: str = "area",
    split_sizes: Sequence[float] = (0.7, 0.1, 0.2),
    split_from: str | Path | None = None,
    id_pattern: str | None = None,
    seed: int = DEFAULT_SEED,
    labeled_fraction: float | None = None,
    labeled_count: int | None = None,
    allow_unpaired: bool = False,
    overwrite: bool = False,
    num_workers: int = 4,
    progress: bool = True,
) -> dict[str, Path]:
    """Resize, split and write a labeled set; return its CSV paths by name.

    Names: ``train``, ``val``, ``test`` and, with a labeled fraction or count,
    ``train_labeled`` and ``train_unlabeled``. Raises DataError for bad input (unpaired
    files unless `allow_unpaired`, unreadable files, a bad split file) and
    FileExistsError for a folder that holds something else unless `overwrite`.
    """
    log = print if progress else (lambda *_: None)
    if image_size < 8:
        raise DataError(f"--image_size must be at least 8, got {image_size}")
    check_layout(layout, allow_unpaired, log)
    output_dir = Path(output_dir).expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"--output_dir {output_dir} exists and is not a folder")
    for src in [layout.source, *layout.source_dirs]:
        if src is not None and is_inside(output_dir, src):
            raise DataError(
                f"--output_dir {output_dir} lies inside the source folder {src}; choose a "
                "folder outside it (sources are only read, and a rerun would read it back)"
            )
        if src is not None and is_inside(src, output_dir):
            # Even with --overwrite: its images/ and masks/ could be the sources themselves.
            raise DataError(
                f"the source folder {src} lies inside --output_dir {output_dir}; choose an "
                "output folder outside the sources (they are never modified)"
            )

    by_id = {s.sample_id: s for s in layout.samples}
    if split_from is not None:
        splits = read_split_file(split_from, layout.samples, id_pattern)
        left_out = len(by_id) - sum(len(v) for v in splits.values())
        if left_out:
            log(f"note: {left_out} pair(s) not named in {split_from} are left out")
    else:
        splits = generate_split(layout.samples, split_counts(len(by_id), split_sizes), seed)
    tables: dict[str, list[str]] = dict(splits)
    if labeled_fraction is not None or labeled_count is not None:
        groups = {sid: by_id[sid].group for sid in splits["train"]}
        tables["train_labeled"], tables["train_unlabeled"] = carve_labeled(
            splits["train"], groups, seed, labeled_fraction, labeled_count
        )

    settings = {
        "format_version": FORMAT_VERSION,
        "image_size": image_size,
        "keep_aspect": keep_aspect,
        "interpolation": interpolation,
        "seed": seed,
        "split_from": None if split_from is None else str(Path(split_from).resolve()),
        "split_sizes": None if split_from is not None else list(split_sizes),
        "labeled_fraction": labeled_fraction,
        "labeled_count": labeled_count,
    }
    used = sorted({sid for ids in splits.values() for sid in ids}, key=natural_key)
    pairs = {
        sid: [str(by_id[sid].image_path.resolve()), str(by_id[sid].mask_path.resolve())]
        for sid in used
    }
    files = [f"{t}.csv" for t in tables] + [
        f"{d}/{sid}.png" for sid in used for d in ("images", "masks")
    ]
    manifest_now = {
        "generator": GENERATOR,
        "dataset": name,
        "settings": settings,
        "pairs": pairs,
        "tables": tables,
        "files": files,
    }
    csv_paths = {t: output_dir / f"{t}.csv" for t in tables}

    old = _read_manifest(output_dir) if output_dir.is_dir() else None
    same = old is not None and all(
        old.get(k) == manifest_now[k] for k in ("dataset", "settings", "pairs", "tables")
    )
    if same and old.get("status") == "complete" and all((output_dir / f).is_file() for f in files):
        log(f"{name} already prepared in {output_dir} (same sources and settings); left as is")
        return csv_paths
    unfinished = old is not None and old.get("status") != "complete"
    if _has_contents(output_dir) and not same and not unfinished and not overwrite:
        raise FileExistsError(
            f"--output_dir {output_dir} already holds {_describe(output_dir, old)}; pass "
            "--overwrite to replace it, or choose another --output_dir"
        )
    if old is not None and not same:
        # Only files an earlier preparation wrote are ever deleted.
        keep = set(files)
        for rel in old["files"]:
            path = _own_file(output_dir, rel)
            if path is not None and rel not in keep and path.is_file():
                path.unlink()

    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    (output_dir / "masks").mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        output_dir / MANIFEST_NAME,
        json.dumps({**manifest_now, "status": "in_progress"}, indent=1) + "\n",
    )

    def work(sid: str) -> tuple[str, bool, str | None]:
        s = by_id[sid]
        try:
            image, mask = load_resized_pair(
                s.image_path, s.mask_path, image_size, keep_aspect, interpolation
            )
            write_image(output_dir / "images" / f"{sid}.png", image)
            write_image(output_dir / "masks" / f"{sid}.png", mask)
        except (DataError, OSError, cv2.error) as exc:
            return (
                sid,
                False,
                f"{s.image_path}: {exc}" if not isinstance(exc, DataError) else str(exc),
            )
        return sid, not mask.any(), None

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        results = list(
            tqdm(
                pool.map(work, used),
                total=len(used),
                desc=f"{name} pairs",
                unit="pair",
                disable=not progress,
                dynamic_ncols=True,
            )
        )
    problems = [r[2] for r in results if r[2]]
    if problems:
        raise DataError(f"{len(problems)} pair(s) could not be prepared:\n" + _listing(problems))
    empty = [r[0] for r in results if r[1]]
    if empty:
        log(f"warning: {len(empty)} mask(s) are empty after resizing: {', '.join(empty[:10])}")

    for table, ids in tables.items():
        if table == "train_unlabeled":
            rows = ["img_path", *(f"images/{sid}.png" for sid in ids)]
        else:
            rows = ["image_path,mask_path", *(f"images/{sid}.png,masks/{sid}.png" for sid in ids)]
        write_text_atomic(csv_paths[table], "\n".join(rows) + "\n")
    # The training scripts read these CSVs through data.io; check them the same way.
    for table, path in csv_paths.items():
        load_unlabeled_csv(path) if table == "train_unlabeled" else load_labeled_csv(path)
    write_text_atomic(
        output_dir / MANIFEST_NAME,
        json.dumps({**manifest_now, "status": "complete"}, indent=1) + "\n",
    )
    log(
        f"{name}: {len(used)} pairs in {time.perf_counter() - start:.1f} s -> {output_dir} ("
        + ", ".join(f"{t} {len(ids)}" for t, ids in tables.items())
        + ")"
    )
    group_counts = Counter(by_id[sid].group for sid in used)
    if len(group_counts) > 1:
        for split in SPLITS:
            c = Counter(by_id[sid].group for sid in splits[split])
            log(
                f"  {split:<5} "
                + ", ".join(f"{g}: {c.get(g, 0)}" for g in sorted(group_counts, key=str))
            )
    return csv_paths


# --------------------------------------------------------------------------------------
# Command line shared by the preparers
# --------------------------------------------------------------------------------------


def build_parser(
    name: str, description: str, default_split: str = "0.7,0.1,0.2"
) -> argparse.ArgumentParser:
    """The arguments every labeled-set preparer takes; the caller adds its source flags."""
    p = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument(
        "--output_dir",
        help=f"target folder (default: ./prepare_datasets/{name}_segs_metadata)",
    )
    p.add_argument(
        "--image_size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        help="output side (default: %(default)s)",
    )
    p.add_argument(
        "--keep_aspect",
        action="store_true",
        help="keep the aspect ratio and pad to a square with zeros (default: stretch to a square)",
    )
    p.add_argument(
        "--interpolation",
        choices=INTERPOLATIONS,
        default="area",
        help="image resampling when shrinking (masks: nearest); default %(default)s",
    )
    split = p.add_mutually_exclusive_group()
    split.add_argument(
        "--split_sizes",
        default=default_split,
        help="generated split train,val,test as counts or fractions (default: %(default)s)",
    )
    split.add_argument(
        "--split_from",
        metavar="FILE_OR_DIR",
        help="follow a given split: a folder with train/val/test lists (the release's CSVs, "
        "whose paths may point anywhere, or text files of ids) or one CSV with id,split",
    )
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="split seed (default: %(default)s)"
    )
    frac = p.add_mutually_exclusive_group()
    frac.add_argument(
        "--labeled_fraction",
        type=float,
        help="also write train_labeled.csv (this fraction of train, seeded, stratified) "
        "and train_unlabeled.csv (the rest, img_path) for single-set SSL",
    )
    frac.add_argument("--labeled_count", type=int, help="as --labeled_fraction, as a count")
    p.add_argument(
        "--allow-unpaired",
        "--allow_unpaired",
        dest="allow_unpaired",
        action="store_true",
        help="leave out images without a mask (and masks without an image) instead of failing",
    )
    p.add_argument("--overwrite", action="store_true", help="replace what --output_dir holds")
    p.add_argument(
        "--num_workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding threads"
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar or messages")
    return p


def run_preparer(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    name: str | Callable[[argparse.Namespace], str],
    find_layout: Callable[[argparse.Namespace], Layout],
    id_pattern: str | None = None,
) -> int:
    """Parse, find the layout, prepare; errors go to stderr with exit status 2.

    `name` (or a function of the parsed arguments giving it) names the data set in the
    manifest and the default output folder `./prepare_datasets/<name>_segs_metadata`.
    """
    a = parser.parse_args(argv)
    name = name(a) if callable(name) else name
    output_dir = a.output_dir or f"./prepare_datasets/{safe_id(name)}_segs_metadata"
    try:
        layout = find_layout(a)
        csvs = prepare_labeled_dataset(
            layout,
            output_dir,
            name=name,
            image_size=a.image_size,
            keep_aspect=a.keep_aspect,
            interpolation=a.interpolation,
            split_sizes=parse_split_sizes(a.split_sizes) if a.split_from is None else (0, 0, 0),
            split_from=a.split_from,
            id_pattern=id_pattern,
            seed=a.seed,
            labeled_fraction=a.labeled_fraction,
            labeled_count=a.labeled_count,
            allow_unpaired=a.allow_unpaired,
            overwrite=a.overwrite,
            num_workers=a.num_workers,
            progress=not a.no_progress,
        )
    except (DataError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not a.no_progress:
        for table, path in csvs.items():
            print(f"  {table:<16} {path}")
    return 0
