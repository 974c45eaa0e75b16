"""List unlabeled colonoscopy images (Polyp-Box-Seg, 4,070 images, or any folder) as the
`img_path` CSV that train_SSL_methods.sh reads.

    python -m prepare_unsupervised_images.create_colon_unlabeled_metadata \\
        --source_dir ~/data/Polyp-Box-Seg

The images under `--source_dir` are listed as resize_colon_unlabeled_images.py lists
them (same `--exclude` patterns: mask and ground-truth files are skipped; box annotation
files are not images), and `img_path` gives each one's place under `--images_dir` (by
default `<output_dir>/images`, where the resizer writes; pass the source folder itself
to use the originals). Paths are relative to the CSV's folder when inside it.

Output (`--output_dir`, default ./prepare_unsupervised_images/PolypBoxSeg_subsets/):
`unlabeled.csv` (every image) and, with `--subset_sizes`, seeded nested subsets
`unlabeled_subset_1k.csv`, ... (each holds the smaller ones) for ablations over |D_U|.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

import numpy as np
import pandas as pd

from data.io import DataError
from prepare_datasets.cli import report_error, require_dir, script_parser
from prepare_datasets.output_folder import path_for_csv, require_outside
from prepare_datasets.splits import DEFAULT_SEED
from prepare_unsupervised_images.create_isic2020_subsets import subset_label, write_listing
from prepare_unsupervised_images.image_resizer import DEFAULT_EXCLUDES, list_images
from prepare_unsupervised_images.resize_colon_unlabeled_images import NAME, add_listing_arguments

DEFAULT_OUTPUT = f"./prepare_unsupervised_images/{NAME}_subsets"


def build_tables(
    sources: Sequence[Path],
    source_dir: Path,
    images_dir: Path,
    output_dir: Path,
    subset_sizes: Sequence[int] = (),
    seed: int = DEFAULT_SEED,
    log=print,
) -> dict[str, pd.DataFrame]:
    """`unlabeled` (all images) and nested random subsets, as `img_path` tables."""
    paths = [path_for_csv(images_dir / s.relative_to(source_dir), output_dir) for s in sources]
    tables = {"unlabeled": pd.DataFrame({"img_path": paths})}
    order = np.random.default_rng(seed).permutation(len(paths))
    for size in sorted(set(subset_sizes)):
        if size > len(paths):
            log(f"skipped unlabeled_subset_{subset_label(size)}: {size} asked, {len(paths)} found")
            continue
        chosen = np.sort(order[:size])
        tables[f"unlabeled_subset_{subset_label(size)}"] = pd.DataFrame(
            {"img_path": [paths[i] for i in chosen]}
        )
    return tables


def main(argv: Sequence[str] | None = None) -> int:
    p = script_parser(__doc__)
    p.add_argument("--source_dir", required=True, help="the folder of colonoscopy images")
    p.add_argument("--images_dir", help="where img_path points (default: <output_dir>/images)")
    p.add_argument("--output_dir", default=DEFAULT_OUTPUT, help="default: %(default)s")
    p.add_argument("--subset_sizes", type=int, nargs="*", default=[], help="nested subset sizes")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default: %(default)s")
    p.add_argument("--check_images", action="store_true", help="fail unless every img_path exists")
    p.add_argument(
        "--overwrite", action="store_true", help="replace different CSVs of the same names"
    )
    add_listing_arguments(p)
    a = p.parse_args(argv)
    output_dir = Path(a.output_dir).expanduser()
    images_dir = Path(a.images_dir).expanduser() if a.images_dir else output_dir / "images"
    try:
        source_dir = require_dir(a.source_dir, "--source_dir")
        require_outside(output_dir, source_dir, "--source_dir")
        sources = list_images(source_dir, not a.no_recursive, a.exclude or DEFAULT_EXCLUDES)
        if not sources:
            raise DataError(f"--source_dir {source_dir} holds no image")
        tables = build_tables(sources, source_dir, images_dir, output_dir, a.subset_sizes, a.seed)
        expected = [output_dir / v for v in tables["unlabeled"]["img_path"]]
        missing = [str(e) for e in expected if not e.is_file()]
        write_listing(
            tables,
            output_dir,
            missing,
            len(expected),
            images_dir,
            a,
            "resize_colon_unlabeled_images.py",
        )
    except (DataError, FileExistsError) as exc:
        return report_error(exc)
    for name, t in tables.items():
        print(f"  {name + '.csv':<28} {len(t):>6} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
