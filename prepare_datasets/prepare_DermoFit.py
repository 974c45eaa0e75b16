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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

from prepare_datasets.cli import require_dir, root_preparer
from prepare_datasets.pairing import Layout, list_image_files, match_per_folder

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
    return match_per_folder(
        images,
        masks,
        root,
        lambda s: s.image_path.stem,
        mask_prefixes=("",),
        mask_suffixes=("mask", "_mask"),
        image_suffixes=("",),
        group_of=_group_under(root),
    )


main = root_preparer(
    NAME, __doc__, "--dermofit_root", "folder holding the class folders", find_dermofit
)


if __name__ == "__main__":
    raise SystemExit(main())
