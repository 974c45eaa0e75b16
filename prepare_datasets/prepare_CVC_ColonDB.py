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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

from data.io import DataError
from prepare_datasets.cli import require_dir, root_preparer
from prepare_datasets.pairing import (
    Layout,
    find_folder_pair,
    list_image_files,
    match_folders,
    match_per_folder,
)

NAME = "CVC-ColonDB"
IMAGE_DIRS = ("images", "image", "imgs", "img", "Original")
MASK_DIRS = ("masks", "mask", "gt", "GroundTruth", "Ground Truth", "labels")


def find_colondb(root: str | Path) -> Layout:
    """CVC-ColonDB's pairs in either layout (see the module docstring)."""
    root = require_dir(root, "--colondb_root")
    pair = find_folder_pair(root, IMAGE_DIRS, MASK_DIRS)
    if pair is not None:
        return match_folders(*pair, root)

    files = list_image_files(root, recursive=True)
    frames = [p for p in files if re.fullmatch(r"\d+", p.stem)]
    polyps = [p for p in files if re.fullmatch(r"[pP]\d+", p.stem)]
    if not frames and not polyps:
        raise DataError(
            f"--colondb_root {root}: neither images/ and masks/ folders nor N.bmp / pN.bmp "
            "files found"
        )
    layout = match_per_folder(
        frames,
        polyps,
        root,
        lambda s: s.image_path.stem,
        mask_prefixes=("p",),
        mask_suffixes=("",),
        image_suffixes=("",),
    )
    ignored = sum(1 for p in files if re.fullmatch(r"[sScC]\d+", p.stem))
    if ignored:
        layout.notes.append(
            f"{ignored} non-informative-region (sN) and contour (cN) files not used"
        )
    return layout


main = root_preparer(
    NAME, __doc__, "--colondb_root", "the unpacked CVC-ColonDB folder", find_colondb
)


if __name__ == "__main__":
    raise SystemExit(main())
