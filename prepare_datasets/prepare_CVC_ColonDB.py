"""Prepare CVC-ColonDB (colonoscopy frames with polyp masks).

    python -m prepare_datasets.prepare_CVC_ColonDB --colondb_root ~/data/CVC-ColonDB

Two layouts are read, whichever `--colondb_root` holds:

* The Computer Vision Center's original release (300 frames from 15 sequences): one
  folder with, for each frame N, `N.bmp` (image), `pN.bmp` (polyp mask), `sN.bmp`
  (non-informative region) and `cN.bmp` (polyp contour); the `s` and `c` files are not
  used. Other image formats (.tif, .png) are read the same way.
* The widely used benchmark copy (380 frames, e.g. the PraNet test set or Kaggle's
  `cvc-colondb`): `images/N.png` and `masks/N.png` with matching names.

The split is generated (seed 8888, 70/10/20 by default; frames of one sequence can fall
into different splits, as in the usual random splits of this set) or read with
`--split_from` (ids are the frame names, e.g. 12).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from data.io import DataError
from prepare_datasets.utils import (
    Layout,
    build_parser,
    find_folder_pair,
    list_image_files,
    match_by_stem,
    require_dir,
    run_preparer,
    with_unique_ids,
)

NAME = "CVC-ColonDB"
IMAGE_DIRS = ("images", "image", "imgs", "img", "Original")
MASK_DIRS = ("masks", "mask", "gt", "GroundTruth", "Ground Truth", "labels")


def find_colondb(root: str | Path) -> Layout:
    """CVC-ColonDB's pairs in either layout (see the module docstring)."""
    root = require_dir(root, "--colondb_root")
    pair = find_folder_pair(root, IMAGE_DIRS, MASK_DIRS)
    if pair is not None:
        images_dir, masks_dir = pair
        layout = match_by_stem(list_image_files(images_dir), list_image_files(masks_dir))
        layout.source, layout.source_dirs = root, [images_dir, masks_dir]
        return layout

    files = list_image_files(root, recursive=True)
    frames = [p for p in files if re.fullmatch(r"\d+", p.stem)]
    polyps = [p for p in files if re.fullmatch(r"[pP]\d+", p.stem)]
    if not frames and not polyps:
        raise DataError(
            f"--colondb_root {root}: neither images/ and masks/ folders nor N.bmp / pN.bmp "
            "files found"
        )
    layout = Layout([], source=root)
    for folder in sorted({p.parent for p in frames + polyps}):
        part = match_by_stem(
            [p for p in frames if p.parent == folder],
            [p for p in polyps if p.parent == folder],
            mask_prefixes=("p",),
            mask_suffixes=("",),
            image_suffixes=("",),
        )
        layout.samples += part.samples
        layout.unmatched_images += part.unmatched_images
        layout.unmatched_masks += part.unmatched_masks
    ignored = sum(1 for p in files if re.fullmatch(r"[sScC]\d+", p.stem))
    if ignored:
        layout.notes.append(
            f"{ignored} non-informative-region (sN) and contour (cN) files not used"
        )
    return with_unique_ids(layout, lambda s: s.image_path.stem)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(NAME, __doc__)
    parser.add_argument("--colondb_root", required=True, help="the unpacked CVC-ColonDB folder")
    return run_preparer(parser, argv, NAME, lambda a: find_colondb(a.colondb_root))


if __name__ == "__main__":
    raise SystemExit(main())
