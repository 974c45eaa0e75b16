"""Splits of a labeled set (docs/METHOD.md §8.1): generated, read from a user's file, and
the labeled part of a training split.

Generated splits and labeled parts are seeded and stratified by group, so that each
split's mix of diagnoses or classes is within about one image of the whole's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data.io import DataError
from prepare_datasets.pairing import (
    DEFAULT_IMAGE_PREFIXES,
    DEFAULT_IMAGE_SUFFIXES,
    DEFAULT_MASK_PREFIXES,
    DEFAULT_MASK_SUFFIXES,
    IMAGE_EXTENSIONS,
    Sample,
    listing,
    natural_key,
    safe_id,
    strip_affixes,
)

SPLITS = ("train", "val", "test")
# The release's seed for data sampling (its ISIC subsets); used for every split here.
DEFAULT_SEED = 8888


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
    for core in strip_affixes(
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


def _read_split_csv(path: Path) -> tuple[pd.DataFrame, str | None]:
    """A split CSV as text, and its id column (None when it has none of `_ID_COLUMNS`)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read split file {path}: {exc}") from None
    return df, next((c for c in _ID_COLUMNS if c in df.columns), None)


def _entries_of_file(path: Path) -> list[str]:
    """The entries of one split list: a CSV's id/path column, or one entry per line."""
    if path.suffix.lower() == ".csv":
        df, column = _read_split_csv(path)
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
        df, column = _read_split_csv(path)
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
            "data set:\n" + listing(unknown)
        )
    if twice:
        raise DataError(f"--split_from {path} lists images in two splits:\n" + listing(twice))
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
