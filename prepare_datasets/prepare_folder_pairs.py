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
from collections.abc import Sequence
from pathlib import Path

from data.io import DataError
from prepare_datasets.utils import (
    DEFAULT_IMAGE_PREFIXES,
    DEFAULT_IMAGE_SUFFIXES,
    DEFAULT_MASK_PREFIXES,
    DEFAULT_MASK_SUFFIXES,
    Layout,
    build_parser,
    find_folder_pair,
    list_image_files,
    match_by_stem,
    require_dir,
    run_preparer,
)

IMAGE_DIRS = ("images", "image", "imgs", "img", "Original")
MASK_DIRS = ("masks", "mask", "gt", "labels", "Ground Truth", "GroundTruth", "annotations")


def split_one_folder(
    files: Sequence[Path], mask_prefixes: Sequence[str], mask_suffixes: Sequence[str]
) -> tuple[list[Path], list[Path]]:
    """Images and masks kept side by side (`x.jpg`, `x_mask.png`): a file is a mask when
    its name is another file's name with a mask prefix or suffix added."""
    stems = {p.stem.casefold() for p in files}
    affixes = [(pre, suf) for pre in mask_prefixes for suf in mask_suffixes if pre or suf]
    masks = []
    for p in files:
        low = p.stem.casefold()
        for pre, suf in affixes:
            pre, suf = pre.casefold(), suf.casefold()
            core = low[len(pre) : len(low) - len(suf)] if len(low) > len(pre) + len(suf) else ""
            if core and low.startswith(pre) and low.endswith(suf) and core in stems:
                masks.append(p)
                break
    mask_set = set(masks)
    return [p for p in files if p not in mask_set], masks


def find_folder_pairs(
    images_dir: Path | None = None,
    masks_dir: Path | None = None,
    root: Path | None = None,
    recursive: bool = False,
    mask_prefixes: Sequence[str] = DEFAULT_MASK_PREFIXES,
    mask_suffixes: Sequence[str] = DEFAULT_MASK_SUFFIXES,
    image_prefixes: Sequence[str] = DEFAULT_IMAGE_PREFIXES,
    image_suffixes: Sequence[str] = DEFAULT_IMAGE_SUFFIXES,
) -> Layout:
    """Pairs from an images folder and a masks folder (given, or found under `root`)."""
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
    masks_dir = require_dir(masks_dir, "--masks_dir")
    images = list_image_files(images_dir, recursive)
    masks = list_image_files(masks_dir, recursive)
    if images_dir.resolve() == masks_dir.resolve():
        images, masks = split_one_folder(images, mask_prefixes, mask_suffixes)
    layout = match_by_stem(
        images, masks, mask_prefixes, mask_suffixes, image_prefixes, image_suffixes
    )
    layout.source = root
    layout.source_dirs = [images_dir, masks_dir]
    return layout


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
            a.mask_prefix or DEFAULT_MASK_PREFIXES,
            a.mask_suffix or DEFAULT_MASK_SUFFIXES,
            a.image_prefix or DEFAULT_IMAGE_PREFIXES,
            a.image_suffix or DEFAULT_IMAGE_SUFFIXES,
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
