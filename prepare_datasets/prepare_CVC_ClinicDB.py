"""Prepare CVC-ClinicDB (612 colonoscopy frames, 384 x 288, with polyp masks).

    python -m prepare_datasets.prepare_CVC_ClinicDB --clinicdb_root ~/data/CVC-ClinicDB

Layout as distributed (polyp.grand-challenge.org, `CVC-ClinicDB.rar`; Kaggle's copy adds
a PNG conversion beside the TIFFs), whichever `--clinicdb_root` holds:

    CVC-ClinicDB/Original/1.tif ... 612.tif          images
    CVC-ClinicDB/Ground Truth/1.tif ... 612.tif      polyp masks
    (or PNG/Original + PNG/Ground Truth, TIF/Original + TIF/Ground Truth)

or a resized copy with `images/` and `masks/` of matching names. Where both TIFF and PNG
copies exist, the first folder pair found (alphabetically) is used. The split is
generated (seed 8888, 70/10/20 by default; frames of one video can fall into different
splits, as in the usual random splits of this set) or read with `--split_from` (ids are
the frame numbers).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

from data.io import DataError
from prepare_datasets.cli import require_dir, root_preparer
from prepare_datasets.pairing import Layout, find_folder_pair, match_folders

NAME = "CVC-ClinicDB"
IMAGE_DIRS = ("Original", "images", "image", "img")
MASK_DIRS = ("Ground Truth", "GroundTruth", "Ground_Truth", "masks", "mask", "gt")


def find_clinicdb(root: str | Path) -> Layout:
    """CVC-ClinicDB's pairs (see the module docstring for the layouts read)."""
    root = require_dir(root, "--clinicdb_root")
    pair = find_folder_pair(root, IMAGE_DIRS, MASK_DIRS)
    if pair is None:
        raise DataError(
            f"--clinicdb_root {root}: no 'Original' + 'Ground Truth' (or images + masks) "
            "folders found"
        )
    return match_folders(*pair, root)


main = root_preparer(
    NAME, __doc__, "--clinicdb_root", "the unpacked CVC-ClinicDB folder", find_clinicdb
)


if __name__ == "__main__":
    raise SystemExit(main())
