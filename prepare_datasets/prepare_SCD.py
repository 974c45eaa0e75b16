"""Prepare SCD, the skin cancer detection set of the University of Waterloo's Vision and
Image Processing Lab (images from DermIS and DermQuest with lesion masks).

    python -m prepare_datasets.prepare_SCD --scd_root ~/data/SCD

Layout as distributed: two zip archives, `skin_image_data_set-1.zip` (patients with
melanoma) and `skin_image_data_set-2.zip` (without); unpack both into one folder and pass
it (or either set's folder) as `--scd_root`:

    Skin Image Data Set-1/skin_data/melanoma/dermIS/<name>_orig.jpg      image
                                                   /<name>_contour.png   lesion mask
                                   /melanoma/dermquest/...
    Skin Image Data Set-2/skin_data/notmelanoma/{dermIS,dermquest}/...

Images and masks pair within one folder by name (`_orig` / `_contour`). The split is
generated (seed 8888, 70/10/20 by default) and stratified by melanoma / not melanoma,
taken from the folder names; `--split_from` follows a given split instead (ids are the
names without `_orig`, prefixed by their folder where two folders share a name).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prepare_datasets.utils import (
    Layout,
    build_parser,
    list_image_files,
    match_by_stem,
    require_dir,
    run_preparer,
    with_unique_ids,
)

NAME = "SCD"


def _group(path: Path) -> str | None:
    parts = {p.casefold() for p in path.parts}
    if "notmelanoma" in parts:
        return "notmelanoma"
    return "melanoma" if "melanoma" in parts else None


def find_scd(root: str | Path) -> Layout:
    """SCD's pairs, grouped melanoma / notmelanoma (see the module docstring)."""
    root = require_dir(root, "--scd_root")
    files = list_image_files(root, recursive=True)
    images = [p for p in files if p.stem.casefold().endswith("_orig")]
    masks = [p for p in files if p.stem.casefold().endswith("_contour")]
    layout = Layout([], source=root)
    # Pair folder by folder: names repeat between the DermIS and DermQuest folders.
    for folder in sorted({p.parent for p in images + masks}):
        part = match_by_stem(
            [p for p in images if p.parent == folder],
            [p for p in masks if p.parent == folder],
            mask_prefixes=("",),
            mask_suffixes=("_contour",),
            image_suffixes=("_orig",),
            group_of=_group,
        )
        layout.samples += part.samples
        layout.unmatched_images += part.unmatched_images
        layout.unmatched_masks += part.unmatched_masks
    others = len(files) - len(images) - len(masks)
    if others:
        layout.notes.append(f"{others} image file(s) named neither *_orig nor *_contour ignored")
    # Ids from names without `_orig`, unique across the DermIS and DermQuest folders.
    return with_unique_ids(layout, lambda s: s.image_path.stem[: -len("_orig")])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(NAME, __doc__)
    parser.add_argument("--scd_root", required=True, help="folder holding the unpacked sets")
    return run_preparer(parser, argv, NAME, lambda a: find_scd(a.scd_root))


if __name__ == "__main__":
    raise SystemExit(main())
