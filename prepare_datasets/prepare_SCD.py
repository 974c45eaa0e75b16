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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

from prepare_datasets.cli import require_dir, root_preparer
from prepare_datasets.pairing import Layout, list_image_files, match_per_folder

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
    # Pair folder by folder: names repeat between the DermIS and DermQuest folders; ids are
    # the names without `_orig`, made unique across those folders.
    layout = match_per_folder(
        images,
        masks,
        root,
        lambda s: s.image_path.stem[: -len("_orig")],
        mask_prefixes=("",),
        mask_suffixes=("_contour",),
        image_suffixes=("_orig",),
        group_of=_group,
    )
    others = len(files) - len(images) - len(masks)
    if others:
        layout.notes.append(f"{others} image file(s) named neither *_orig nor *_contour ignored")
    return layout


main = root_preparer(NAME, __doc__, "--scd_root", "folder holding the unpacked sets", find_scd)


if __name__ == "__main__":
    raise SystemExit(main())
