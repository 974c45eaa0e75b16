"""Resize the ISIC 2020 training JPEGs for the unlabeled subsets (parallel, resumable).

    python -m prepare_unsupervised_images.resize_isic2020_images \\
        --input_dir ~/data/ISIC2020/train \\
        --csv ./prepare_unsupervised_images/ISIC2020_subsets/train_subset_30k.csv

`--input_dir` is the unpacked `ISIC_2020_Training_JPEG.zip` (`train/ISIC_0015719.jpg`,
...). With `--csv` (repeatable: the subset, val and test CSVs of
create_isic2020_subsets.py) only the images they list are resized, and afterwards every
`img_path` of those CSVs is checked to be there; without it, every JPEG of the folder is.
Outputs keep their names (`<output_dir>/ISIC_0015719.jpg`, 224 x 224 by default).

Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale where that still leaves the target
size (several times faster than a full decode; see benchmarks/resize_throughput.py).
Finished files are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

from data.io import JPEG_EXTENSIONS, DataError, read_csv_checked, resolve_path
from prepare_datasets.cli import report_error, script_parser
from prepare_unsupervised_images.image_resizer import (
    add_folder_arguments,
    add_resize_arguments,
    input_and_output,
    list_images,
    run_resize_jobs,
)

DEFAULT_OUTPUT = "./prepare_unsupervised_images/ISIC2020_subsets/images"


def _names_from_csvs(csvs: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for csv in csvs:
        df = read_csv_checked(csv)
        if "image_name" in df.columns:
            names += df["image_name"].astype(str).tolist()
        elif "img_path" in df.columns:
            names += [Path(str(v)).stem for v in df["img_path"]]
        else:
            raise DataError(
                f"CSV {csv} has neither image_name nor img_path; it has {list(df.columns)}"
            )
    return list(dict.fromkeys(names))


def _check_csv_paths(csvs: Sequence[Path]) -> list[str]:
    """img_path entries of the CSVs that do not exist (where the CSVs expect the images)."""
    missing = []
    for csv in csvs:
        df = read_csv_checked(csv)
        if "img_path" not in df.columns:
            continue
        for i, value in enumerate(df["img_path"].astype(str)):
            if resolve_path(value, csv.parent) is None:
                missing.append(f"{csv}, line {i + 2}: {value}")
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    p = script_parser(__doc__)
    add_folder_arguments(p, "the ISIC 2020 training JPEG folder", DEFAULT_OUTPUT)
    p.add_argument("--csv", action="append", default=[], help="resize only the images listed here")
    add_resize_arguments(p)
    a = p.parse_args(argv)
    try:
        input_dir, output_dir = input_and_output(a)
        csvs = [Path(c) for c in a.csv]
        jpegs = [
            s
            for s in list_images(input_dir, recursive=False, exclude=())
            if s.suffix.lower() in JPEG_EXTENSIONS
        ]
        if csvs:
            # The archive ships `.jpg`; a copy renamed to `.JPG`/`.jpeg` is found by its id,
            # and written as the CSVs' img_path names it.
            by_stem = {s.stem: s for s in jpegs}
            names = _names_from_csvs(csvs)
            missing = [str(input_dir / f"{name}.jpg") for name in names if name not in by_stem]
            if missing:
                raise DataError(
                    f"{len(missing)} image(s) listed in --csv are not in --input_dir, e.g.\n  "
                    + "\n  ".join(missing[:10])
                )
            sources = [by_stem[name] for name in names]
            targets = [output_dir / f"{name}.jpg" for name in names]
        else:
            if not jpegs:
                raise DataError(f"--input_dir {input_dir} holds no JPEG")
            sources = jpegs
            targets = [output_dir / s.name for s in sources]
    except DataError as exc:
        return report_error(exc)
    jobs = list(zip(sources, targets, strict=True))
    status = run_resize_jobs(jobs, a, "ISIC 2020")
    if status == 0 and csvs:
        missing = _check_csv_paths(csvs)
        if missing:
            print(
                f"warning: {len(missing)} img_path(s) of the CSVs still do not exist (were they "
                f"made with --images_dir {output_dir}?), e.g.\n  " + "\n  ".join(missing[:5]),
                file=sys.stderr,
            )
            return 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
