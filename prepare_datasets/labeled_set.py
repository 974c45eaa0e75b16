"""The one pipeline behind every labeled-set preparer: resize, split, write, list.

Given a `Layout` (see `prepare_datasets.pairing`), `prepare_labeled_dataset` does the same
for every data set (docs/METHOD.md §8.1, §8.3):

* each pair decoded and resized alike (`data.image_resize`): the image by area averaging
  (bilinear when enlarging, or on request), the mask, binarised by `data.io.read_mask`
  whatever its encoding, by nearest neighbour; masks are written as PNG 0/255;
* a split, generated (seeded, stratified by group) or read from the user's file, and
  optionally a labeled part carved from the training split (D_L and D_U);
* `images/`, `masks/`, `train.csv`, `val.csv`, `test.csv` (`image_path,mask_path`, paths
  relative to the CSV's folder) and, with a labeled part, `train_labeled.csv` and
  `train_unlabeled.csv` (`img_path`), plus `train_unlabeled_heldout.csv` (`img_path,
  mask_path`: the same images with their masks held out, which Phase 2 reads only for the
  diagnostics of docs/METHOD.md §6.1), all checked with data.io's loaders once written.

`prepare_manifest.json` records what the folder holds (`prepare_datasets.output_folder`).
Source folders are only read, and an output folder inside a source folder is refused (a
rerun would read it back).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data.io import (
    DataError,
    load_heldout_masks,
    load_labeled_csv,
    load_unlabeled_csv,
    read_image,
    read_mask,
)
from prepare_datasets.output_folder import (
    ManifestFile,
    claim_output_folder,
    is_inside,
    visible_names,
    write_image,
    write_text_atomic,
)
from prepare_datasets.pairing import Layout, check_layout, listing, natural_key
from prepare_datasets.resizing import ResizeSettings
from prepare_datasets.splits import (
    DEFAULT_SEED,
    SPLITS,
    carve_labeled,
    generate_split,
    read_split_file,
    split_counts,
)

MANIFEST = ManifestFile("prepare_manifest.json", "prepare_datasets", indent=1, format_version=1)


def load_resized_pair(
    image_path: Path, mask_path: Path, resize: ResizeSettings
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
    return resize.image(image), resize.mask(mask)


HELDOUT_CSV = "train_unlabeled_heldout.csv"


def write_heldout_csv(path: Path, ids: Sequence[str]) -> None:
    """D_U's images with their held-out masks (`img_path,mask_path`), checked as Phase 2's
    diagnostics read it (`data.io.load_heldout_masks`)."""
    rows = ["img_path,mask_path", *(f"images/{sid}.png,masks/{sid}.png" for sid in ids)]
    write_text_atomic(path, "\n".join(rows) + "\n")
    load_heldout_masks(path)


def prepare_labeled_dataset(
    layout: Layout,
    output_dir: str | Path,
    *,
    name: str,
    resize: ResizeSettings,
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
    if resize.size < 8:
        raise DataError(f"--image_size must be at least 8, got {resize.size}")
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
        "format_version": MANIFEST.format_version,
        "image_size": resize.size,
        "keep_aspect": resize.keep_aspect,
        "interpolation": resize.interpolation,
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
    # D_U with its held-out masks (diagnostics only); derived from the tables, not one.
    heldout = tables.get("train_unlabeled")
    extra_csvs = [HELDOUT_CSV] if heldout is not None else []
    files = (
        [f"{t}.csv" for t in tables]
        + extra_csvs
        + [f"{d}/{sid}.png" for sid in used for d in ("images", "masks")]
    )
    manifest_now = {
        "generator": MANIFEST.generator,
        "dataset": name,
        "settings": settings,
        "pairs": pairs,
        "tables": tables,
        "files": files,
    }
    csv_paths = {t: output_dir / f"{t}.csv" for t in tables}
    if heldout is not None:
        csv_paths[HELDOUT_CSV.removesuffix(".csv")] = output_dir / HELDOUT_CSV

    def describe(old: dict | None) -> str:
        if old is not None:
            return f"a different preparation ({old.get('dataset')}, {old.get('settings')})"
        return f"files of another origin ({visible_names(output_dir)})"

    if claim_output_folder(
        output_dir,
        MANIFEST,
        files,
        lambda old: all(
            old.get(k) == manifest_now[k] for k in ("dataset", "settings", "pairs", "tables")
        ),
        describe,
        overwrite,
        redo_unfinished=True,
    ):
        log(f"{name} already prepared in {output_dir} (same sources and settings); left as is")
        if heldout is not None and not (output_dir / HELDOUT_CSV).exists():
            write_heldout_csv(output_dir / HELDOUT_CSV, heldout)  # folders from before it
        return csv_paths
    MANIFEST.write(output_dir, {**manifest_now, "status": "in_progress"})

    def work(sid: str) -> tuple[str, bool, str | None]:
        s = by_id[sid]
        try:
            image, mask = load_resized_pair(s.image_path, s.mask_path, resize)
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
        raise DataError(f"{len(problems)} pair(s) could not be prepared:\n" + listing(problems))
    empty = [r[0] for r in results if r[1]]
    if empty:
        log(f"warning: {len(empty)} mask(s) are empty after resizing: {', '.join(empty[:10])}")

    for table, ids in tables.items():
        if table == "train_unlabeled":
            rows = ["img_path", *(f"images/{sid}.png" for sid in ids)]
        else:
            rows = ["image_path,mask_path", *(f"images/{sid}.png,masks/{sid}.png" for sid in ids)]
        write_text_atomic(csv_paths[table], "\n".join(rows) + "\n")
    if heldout is not None:
        write_heldout_csv(output_dir / HELDOUT_CSV, heldout)
    # The training scripts read these CSVs through data.io; check them the same way.
    for table, path in csv_paths.items():
        if table == "train_labeled" or table in SPLITS:
            load_labeled_csv(path)
        else:
            load_unlabeled_csv(path)
    MANIFEST.write(output_dir, {**manifest_now, "status": "complete"})
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
