"""Resize a folder of unlabeled colonoscopy images (Polyp-Box-Seg, or any other).

    python -m prepare_unsupervised_images.resize_colon_unlabeled_images \\
        --input_dir ~/data/Polyp-Box-Seg

Every image under `--input_dir` (subfolders included; files or folders matching an
`--exclude` pattern, by default anything named like a mask or ground truth, are skipped;
annotation files such as .txt, .xml or .json are not images and are ignored) is resized
into `--output_dir` under the same relative path and name (default 224 x 224). Run
create_colon_unlabeled_metadata.py with the same `--source_dir`/`--exclude` to list them.
Parallel and resumable, with reduced-scale decoding for JPEGs, as resize_isic2020_images.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

from data.io import DataError
from prepare_datasets.cli import report_error, script_parser
from prepare_unsupervised_images.image_resizer import (
    DEFAULT_EXCLUDES,
    add_folder_arguments,
    add_resize_arguments,
    input_and_output,
    list_images,
    run_resize_jobs,
)

NAME = "PolypBoxSeg"
DEFAULT_OUTPUT = f"./prepare_unsupervised_images/{NAME}_subsets/images"


def add_listing_arguments(p: argparse.ArgumentParser) -> None:
    """How the image folder is listed; the metadata script lists it the same way."""
    p.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="skip paths (relative, case-insensitive) matching this pattern; repeatable; "
        f"given at least once, replaces the default {list(DEFAULT_EXCLUDES)}",
    )
    p.add_argument("--no_recursive", action="store_true", help="do not read subfolders")


def main(argv: Sequence[str] | None = None) -> int:
    p = script_parser(__doc__)
    add_folder_arguments(p, "the folder of colonoscopy images", DEFAULT_OUTPUT)
    add_listing_arguments(p)
    add_resize_arguments(p)
    a = p.parse_args(argv)
    try:
        input_dir, output_dir = input_and_output(a)
        sources = list_images(input_dir, not a.no_recursive, a.exclude or DEFAULT_EXCLUDES)
        if not sources:
            raise DataError(f"--input_dir {input_dir} holds no image")
    except DataError as exc:
        return report_error(exc)
    jobs = [(s, output_dir / s.relative_to(input_dir)) for s in sources]
    return run_resize_jobs(jobs, a, "colonoscopy")


if __name__ == "__main__":
    raise SystemExit(main())
