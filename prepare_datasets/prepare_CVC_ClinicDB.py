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
)

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
    images_dir, masks_dir = pair
    layout = match_by_stem(list_image_files(images_dir), list_image_files(masks_dir))
    layout.source, layout.source_dirs = root, [images_dir, masks_dir]
    return layout


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(NAME, __doc__)
    parser.add_argument("--clinicdb_root", required=True, help="the unpacked CVC-ClinicDB folder")
    return run_preparer(parser, argv, NAME, lambda a: find_clinicdb(a.clinicdb_root))


if __name__ == "__main__":
    raise SystemExit(main())
