"""Prepare any data set held as an images folder and a masks folder.

    python -m prepare_datasets.prepare_folder_pairs --root ../shared/data/CVC-ClinicDB
    python -m prepare_datasets.prepare_folder_pairs --images_dir IMGS --masks_dir MASKS --name MySet

With `--root`, the image and mask folders are found under it by name (`images`, `image`,
`img`, `Original` / `masks`, `mask`, `gt`, `labels`, `Ground Truth`). Files pair by name,
ignoring case and extension: a mask named like its image is taken first, then names with
a mask prefix or suffix, tried in the order given (defaults cover the usual spellings:
`_lesion`, `_contour`, `mask`, `_mask`, `_segmentation`, `_seg`, `_gt`, a `p` prefix ...),
and image names lose an image suffix (`_orig`, `_image`) before matching. Images without
a mask and masks without an image are listed; they are an error unless --allow-unpaired.
Images and masks kept in one folder (`x.jpg` beside `x_mask.png`) are read by passing
that folder as both --images_dir and --masks_dir: a file named like another plus a mask
affix is a mask. Masks may be 0/1, 0/255, RGB, palette or JPEG with compression noise:
all are binarised at half their range and written as PNG 0/255.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

from data.io import DataError
from prepare_datasets.cli import build_parser, require_dir, run_preparer
from prepare_datasets.pairing import (
    DEFAULT_IMAGE_PREFIXES,
    DEFAULT_IMAGE_SUFFIXES,
    DEFAULT_MASK_PREFIXES,
    DEFAULT_MASK_SUFFIXES,
    Layout,
    find_folder_pair,
    match_folders,
)

IMAGE_DIRS = ("images", "image", "imgs", "img", "Original")
MASK_DIRS = ("masks", "mask", "gt", "labels", "Ground Truth", "GroundTruth", "annotations")


def find_folder_pairs(
    images_dir: Path | None = None,
    masks_dir: Path | None = None,
    root: Path | None = None,
    recursive: bool = False,
    **affixes: Sequence[str],
) -> Layout:
    """Pairs from an images folder and a masks folder (given, or found under `root`);
    `affixes` are `match_folders`' mask and image prefixes and suffixes."""
    if root is not None:
        root = require_dir(root, "--root")
        pair = find_folder_pair(root, IMAGE_DIRS, MASK_DIRS)
        if pair is None:
            raise DataError(
                f"--root {root}: no image and mask folders found (looked for {list(IMAGE_DIRS)} "
                f"beside {list(MASK_DIRS)}); pass --images_dir and --masks_dir"
            )
        images_dir, masks_dir = pair
    elif images_dir is None or masks_dir is None:
        raise DataError("pass --root, or both --images_dir and --masks_dir")
    images_dir = require_dir(images_dir, "--images_dir")
    return match_folders(
        images_dir, require_dir(masks_dir, "--masks_dir"), root, recursive, **affixes
    )


def _name(a: argparse.Namespace) -> str:
    if a.name:
        return a.name
    if a.root:
        return Path(a.root).resolve().name
    return Path(a.images_dir).resolve().parent.name if a.images_dir else "custom"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("<NAME>", __doc__)
    _add_source_arguments(parser)
    return run_preparer(
        parser,
        argv,
        _name,
        lambda a: find_folder_pairs(
            a.images_dir,
            a.masks_dir,
            a.root,
            a.recursive,
            mask_prefixes=a.mask_prefix or DEFAULT_MASK_PREFIXES,
            mask_suffixes=a.mask_suffix or DEFAULT_MASK_SUFFIXES,
            image_prefixes=a.image_prefix or DEFAULT_IMAGE_PREFIXES,
            image_suffixes=a.image_suffix or DEFAULT_IMAGE_SUFFIXES,
        ),
    )


def _add_source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", help="folder holding an images folder and a masks folder")
    p.add_argument("--images_dir", help="the images folder")
    p.add_argument("--masks_dir", help="the masks folder")
    p.add_argument(
        "--name",
        help="data set name for the default --output_dir "
        "(./prepare_datasets/<NAME>_segs_metadata; default: the folder's name)",
    )
    p.add_argument("--recursive", action="store_true", help="also read subfolders")
    p.add_argument(
        "--mask_suffix",
        action="append",
        metavar="SUFFIX",
        help="a mask name suffix, repeatable, tried in order after the exact name "
        f"(default: {' '.join(repr(s) for s in DEFAULT_MASK_SUFFIXES[1:])})",
    )
    p.add_argument(
        "--mask_prefix",
        action="append",
        metavar="PREFIX",
        help="a mask name prefix, repeatable "
        f"(default: {' '.join(repr(s) for s in DEFAULT_MASK_PREFIXES[1:])})",
    )
    p.add_argument(
        "--image_suffix",
        action="append",
        metavar="SUFFIX",
        help="an image name suffix to drop before matching, repeatable "
        f"(default: {' '.join(repr(s) for s in DEFAULT_IMAGE_SUFFIXES[1:])})",
    )
    p.add_argument(
        "--image_prefix", action="append", metavar="PREFIX", help="an image name prefix to drop"
    )


if __name__ == "__main__":
    raise SystemExit(main())
