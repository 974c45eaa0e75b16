"""Command-line helpers of the preparers: parsers, argument checks, error reporting.

Every script exits with status 0 on success and 2, with one `error:` line on stderr
naming the file or argument at fault, on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from data.image_resize import DEFAULT_IMAGE_SIZE, INTERPOLATIONS
from data.io import DataError
from prepare_datasets.labeled_set import prepare_labeled_dataset
from prepare_datasets.pairing import Layout, safe_id
from prepare_datasets.resizing import ResizeSettings
from prepare_datasets.splits import DEFAULT_SEED, parse_split_sizes


def script_parser(description: str) -> argparse.ArgumentParser:
    """A parser showing the script's docstring as written, taking no abbreviated flags."""
    return argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )


def report_error(exc: Exception) -> int:
    """Print `exc` as the script's one error line; the exit status for bad input."""
    print(f"error: {exc}", file=sys.stderr)
    return 2


def same_named(a: argparse.Namespace, *names: str) -> dict[str, object]:
    """The parsed options `names`, as keyword arguments of a function that takes them
    under the same names."""
    return {n: getattr(a, n) for n in names}


def require_dir(path: str | Path, argument: str) -> Path:
    """The folder an argument names, or a DataError naming the argument."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{argument} {p} does not exist")
    if not p.is_dir():
        raise DataError(f"{argument} {p} is not a folder")
    return p


def build_parser(
    name: str, description: str, default_split: str = "0.7,0.1,0.2"
) -> argparse.ArgumentParser:
    """The arguments every labeled-set preparer takes; the caller adds its source flags."""
    p = script_parser(description)
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
            resize=ResizeSettings.from_args(a),
            split_sizes=parse_split_sizes(a.split_sizes) if a.split_from is None else (0, 0, 0),
            id_pattern=id_pattern,
            progress=not a.no_progress,
            **same_named(
                a,
                "split_from",
                "seed",
                "labeled_fraction",
                "labeled_count",
                "allow_unpaired",
                "overwrite",
                "num_workers",
            ),
        )
    except (DataError, FileExistsError) as exc:
        return report_error(exc)
    if not a.no_progress:
        for table, path in csvs.items():
            print(f"  {table:<16} {path}")
    return 0


def root_preparer(
    name: str,
    description: str,
    root_argument: str,
    root_help: str,
    find_layout: Callable[[str], Layout],
    default_split: str = "0.7,0.1,0.2",
    id_pattern: str | None = None,
) -> Callable[[Sequence[str] | None], int]:
    """The `main(argv)` of a preparer reading one folder, given as `root_argument`:
    `run_preparer` with `build_parser`'s arguments and that one."""

    def main(argv: Sequence[str] | None = None) -> int:
        parser = build_parser(name, description, default_split)
        parser.add_argument(root_argument, required=True, help=root_help)
        dest = root_argument.lstrip("-")
        return run_preparer(parser, argv, name, lambda a: find_layout(getattr(a, dest)), id_pattern)

    return main
