"""Draw the ISIC 2020 unlabeled subsets: 1k, 5k, 10k, 20k and 30k, plus val and test.

    python -m prepare_unsupervised_images.create_isic2020_subsets \\
        --metadata_csv ~/data/ISIC2020/ISIC_2020_Training_GroundTruth.csv \\
        --duplicates_csv ~/data/ISIC2020/ISIC_2020_Training_Duplicates.csv \\
        --images_dir ./prepare_unsupervised_images/ISIC2020_subsets/images

Inputs as distributed by the ISIC archive (SIIM-ISIC 2020 challenge): the training ground
truth (`ISIC_2020_Training_GroundTruth.csv`, or `_v2`, 33,126 rows: image_name,
patient_id, sex, age_approx, anatom_site_general_challenge, diagnosis, benign_malignant,
target) and the list of duplicate pairs (`ISIC_2020_Training_Duplicates.csv`:
image_name_1, image_name_2; the second image of each pair is removed, leaving 32,701).

From the deduplicated images, 1,000 validation and 1,701 test images are held out and
the training subsets are drawn from the rest, all stratified by benign/malignant with seed
8888. Subsets are nested (5k holds 1k's images, and so on), and every subset's malignant
fraction is within about one image of the whole's. A subset larger than the images left
after the hold-out is skipped with a message.

Output (`--output_dir`, default ./prepare_unsupervised_images/ISIC2020_subsets/):
`train_subset_1k.csv` ... `train_subset_30k.csv`, `val.csv`, `test.csv`, with the release's
columns plus `img_path` = `--images_dir/<image_name>.jpg`: where the (resized) images are
expected, relative to the CSV's folder when inside it. The images are not read unless
--check_images; resize them into `--images_dir` with resize_isic2020_images.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

import numpy as np
import pandas as pd

from data.io import DataError, read_csv_checked
from prepare_datasets.cli import report_error, script_parser
from prepare_datasets.output_folder import path_for_csv, write_tables
from prepare_datasets.splits import DEFAULT_SEED, stratified_order

RELEASE_COLUMNS = (
    "image_name",
    "patient_id",
    "sex",
    "age_approx",
    "anatom_site_general_challenge",
    "diagnosis",
    "benign_malignant",
    "target",
)
DEFAULT_SUBSETS = (1000, 5000, 10000, 20000, 30000)
DEFAULT_OUTPUT = "./prepare_unsupervised_images/ISIC2020_subsets"


def subset_label(n: int) -> str:
    """1000 -> '1k', 5000 -> '5k', 1500 -> '1500'."""
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def write_listing(
    tables: dict[str, pd.DataFrame],
    output_dir: Path,
    missing: Sequence[str],
    total: int,
    images_dir: Path,
    a: argparse.Namespace,
    resizer: str,
) -> None:
    """Write the tables as `<name>.csv` (`--overwrite` replaces different CSVs of those
    names) once the images they list are checked: the `missing` ones of `total` are an
    error with `--check_images`, else a note (the images may be resized after the CSVs are
    written, by `resizer`)."""
    if missing and a.check_images:
        raise DataError(
            f"--check_images: {len(missing)} of {total} image(s) missing, e.g.\n  "
            + "\n  ".join(missing[:10])
        )
    if missing:
        print(
            f"note: {len(missing)} of {total} images are not in {images_dir} (yet): "
            f"img_path gives where they are expected; resize them there with {resizer}"
        )
    write_tables(tables, output_dir, a.overwrite)


def load_metadata(metadata_csv: Path, duplicates_csv: Path | None, log=print) -> pd.DataFrame:
    """The ground-truth table with duplicates removed (second image of each pair)."""
    df = read_csv_checked(metadata_csv, RELEASE_COLUMNS)
    df = df.astype({"image_name": str})
    repeated = df["image_name"].duplicated()
    if repeated.any():
        log(f"note: {int(repeated.sum())} repeated row(s) of one image_name dropped")
        df = df[~repeated]
    bad = ~df["target"].isin([0, 1])
    if bad.any():
        rows = [f"line {i + 2}: target {df['target'].iloc[i]!r}" for i in np.flatnonzero(bad)[:10]]
        raise DataError(f"{metadata_csv}: target must be 0 or 1:\n  " + "\n  ".join(rows))
    if duplicates_csv is not None:
        dup = read_csv_checked(duplicates_csv, ("image_name_1", "image_name_2"))
        drop = set(dup["image_name_2"].astype(str))
        unknown = drop - set(df["image_name"])
        if unknown:
            log(
                f"note: {len(unknown)} duplicate(s) listed in {duplicates_csv} are not in "
                "the metadata"
            )
        before = len(df)
        df = df[~df["image_name"].isin(drop)]
        log(f"removed {before - len(df)} duplicate image(s) listed in {duplicates_csv}")
    return df.reset_index(drop=True)


def draw_subsets(
    df: pd.DataFrame,
    val_size: int,
    test_size: int,
    subset_sizes: Sequence[int],
    seed: int,
    log=print,
) -> dict[str, pd.DataFrame]:
    """Stratified hold-out, then nested stratified training subsets (by `target`)."""
    n = len(df)
    if val_size + test_size >= n:
        raise DataError(
            f"--val_size {val_size} + --test_size {test_size} leave no training image of {n}"
        )
    rng = np.random.default_rng(seed)
    order = stratified_order(df["target"].tolist(), rng)
    val_idx, test_idx, pool_idx = (
        order[:val_size],
        order[val_size : val_size + test_size],
        order[val_size + test_size :],
    )
    # A fresh stratified order of the pool, so that its every prefix is stratified.
    pool_order = pool_idx[stratified_order(df["target"].iloc[pool_idx].tolist(), rng)]
    tables = {"val": df.iloc[np.sort(val_idx)], "test": df.iloc[np.sort(test_idx)]}
    for size in sorted(set(subset_sizes)):
        if size > len(pool_order):
            log(
                f"skipped train_subset_{subset_label(size)}: {size} images asked, "
                f"{len(pool_order)} left after the hold-out"
            )
            continue
        tables[f"train_subset_{subset_label(size)}"] = df.iloc[np.sort(pool_order[:size])]
    return tables


def with_img_path(
    table: pd.DataFrame, images_dir: Path, output_dir: Path, ext: str
) -> pd.DataFrame:
    out = table.loc[:, list(RELEASE_COLUMNS)].copy()
    out["img_path"] = [
        path_for_csv(images_dir / f"{name}{ext}", output_dir) for name in out["image_name"]
    ]
    return out


def build_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__)
    p.add_argument("--metadata_csv", required=True, help="ISIC_2020_Training_GroundTruth(_v2).csv")
    p.add_argument(
        "--duplicates_csv", help="ISIC_2020_Training_Duplicates.csv (image_name_1,image_name_2)"
    )
    p.add_argument(
        "--images_dir",
        required=True,
        help="folder where the (resized) images are, or will be: img_path points there",
    )
    p.add_argument("--output_dir", default=DEFAULT_OUTPUT, help="default: %(default)s")
    p.add_argument(
        "--image_ext", default=".jpg", help="image file extension (default: %(default)s)"
    )
    p.add_argument("--val_size", type=int, default=1000, help="default: %(default)s")
    p.add_argument("--test_size", type=int, default=1701, help="default: %(default)s")
    p.add_argument(
        "--subset_sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SUBSETS),
        help="training subset sizes (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default: %(default)s")
    p.add_argument(
        "--check_images",
        action="store_true",
        help="fail unless every img_path exists (off by default: the images may be resized later)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace different CSVs of the same names"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    output_dir, images_dir = Path(a.output_dir), Path(a.images_dir).expanduser()
    try:
        df = load_metadata(
            Path(a.metadata_csv), Path(a.duplicates_csv) if a.duplicates_csv else None
        )
        whole = df["target"].mean()
        print(f"{len(df)} images, {int(df['target'].sum())} malignant ({100 * whole:.3f}%)")
        tables = draw_subsets(df, a.val_size, a.test_size, a.subset_sizes, a.seed)
        ext = a.image_ext if a.image_ext.startswith(".") else f".{a.image_ext}"
        tables = {k: with_img_path(t, images_dir, output_dir, ext) for k, t in tables.items()}
        expected = sorted({p for t in tables.values() for p in t["img_path"]})
        # An absolute img_path joins to itself; a relative one is under the CSV's folder.
        missing = [p for p in expected if not (output_dir / p).is_file()]
        write_listing(
            tables, output_dir, missing, len(expected), images_dir, a, "resize_isic2020_images.py"
        )
    except (DataError, FileExistsError) as exc:
        return report_error(exc)
    for name, t in tables.items():
        frac = t["target"].mean()
        print(
            f"  {name + '.csv':<24} {len(t):>6} images, malignant {100 * frac:.3f}% "
            f"(whole {100 * whole:.3f}%)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
