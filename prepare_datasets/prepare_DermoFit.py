"""Prepare the Dermofit Image Library (1,300 clinical skin lesion images, 10 classes).

    python -m prepare_datasets.prepare_DermoFit --dermofit_root ~/data/Dermofit

Layout as distributed by the University of Edinburgh (one archive per class, unpacked into
one folder): a folder per class, a folder per lesion, the image and its mask side by side:

    AK/  BCC/  DF/  IEC/  MEL/  ML/  PYO/  SCC/  SK/  VASC/
      B100/
        B100.png          image (sizes vary)
        B100mask.png      lesion mask

Masks pair with the image of the same name plus `mask`, in the same folder. The split is
generated (seed 8888, 70/10/20 by default) and stratified by class (the class folder's
name); `--split_from` follows a given split instead (ids are the lesion names, e.g. B100).
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

NAME = "DermoFit"
CLASSES = ("AK", "BCC", "DF", "IEC", "MEL", "ML", "PYO", "SCC", "SK", "VASC")


def _group_under(root: Path):
    classes = {c.casefold(): c for c in CLASSES}

    def group(path: Path) -> str | None:
        parts = path.relative_to(root).parts[:-1]
        for part in parts:
            if part.casefold() in classes:
                return classes[part.casefold()]
        # A class folder of another name: the folder above the lesion's own folder.
        return parts[-2] if len(parts) >= 2 else None

    return group


def find_dermofit(root: str | Path) -> Layout:
    """Dermofit's pairs grouped by class (see the module docstring for the layout)."""
    root = require_dir(root, "--dermofit_root")
    files = list_image_files(root, recursive=True)
    masks = [p for p in files if p.stem.casefold().endswith("mask")]
    images = [p for p in files if not p.stem.casefold().endswith("mask")]
    layout = Layout([], source=root)
    group = _group_under(root)
    for folder in sorted({p.parent for p in files}):
        part = match_by_stem(
            [p for p in images if p.parent == folder],
            [p for p in masks if p.parent == folder],
            mask_prefixes=("",),
            mask_suffixes=("mask", "_mask"),
            image_suffixes=("",),
            group_of=group,
        )
        layout.samples += part.samples
        layout.unmatched_images += part.unmatched_images
        layout.unmatched_masks += part.unmatched_masks
    return with_unique_ids(layout, lambda s: s.image_path.stem)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(NAME, __doc__)
    parser.add_argument("--dermofit_root", required=True, help="folder holding the class folders")
    return run_preparer(parser, argv, NAME, lambda a: find_dermofit(a.dermofit_root))


if __name__ == "__main__":
    raise SystemExit(main())
