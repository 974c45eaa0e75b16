"""Prepare PH2 (200 dermoscopy images) from its distributed archive.

    python -m prepare_datasets.prepare_PH2 --ph2_root ~/data/PH2Dataset

Layout as distributed (ADDI project, Universidade do Porto); `--ph2_root` may name
`PH2Dataset` or the folder holding it:

    PH2Dataset/
      PH2_dataset.txt                    diagnoses: '||'-separated table, one row per image
      PH2 Dataset images/
        IMD002/
          IMD002_Dermoscopic_Image/IMD002.bmp    image, about 765 x 574
          IMD002_lesion/IMD002_lesion.bmp        lesion mask, 0/255
          IMD002_roi/...                         colour regions (not used)

The split is generated (seed 8888, 140/20/40, stratified by clinical diagnosis from
`PH2_dataset.txt`: 80 common nevi, 80 atypical nevi, 40 melanomas) or read with
`--split_from`: a folder with train/val/test lists, e.g. the authors' release CSVs, whose
paths point to their machine (only the `IMDnnn` ids are used), or text files of ids.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

from data.io import DataError
from prepare_datasets.cli import require_dir, root_preparer
from prepare_datasets.pairing import IMAGE_EXTENSIONS, Layout, Sample, find_named_dir

NAME = "PH2"
ID_PATTERN = r"IMD\d{3}"
# The "Clinical Diagnosis" column of PH2_dataset.txt.
DIAGNOSES = {0: "common_nevus", 1: "atypical_nevus", 2: "melanoma"}


def parse_diagnoses(txt: Path) -> dict[str, str]:
    """Clinical diagnosis per image id from `PH2_dataset.txt`.

    Data rows read `|| IMD003 || <histology> || 2 || ...`: split on `||`, the fields are
    name, histological diagnosis, clinical diagnosis (0, 1, 2), ... The legend below the
    table has no `IMDnnn` name and is skipped.
    """
    out: dict[str, str] = {}
    for line_no, line in enumerate(txt.read_text(errors="replace").splitlines(), start=1):
        fields = [f.strip() for f in line.split("||")]
        if len(fields) < 4 or not re.fullmatch(ID_PATTERN, fields[1]):
            continue
        try:
            out[fields[1]] = DIAGNOSES[int(fields[3])]
        except (ValueError, KeyError):
            raise DataError(
                f"{txt}, line {line_no}: clinical diagnosis {fields[3]!r} of {fields[1]} is "
                f"not one of {sorted(DIAGNOSES)}"
            ) from None
    return out


def _one_image(folder: Path, stem: str) -> Path | None:
    if not folder.is_dir():
        return None
    hits = sorted(
        p for p in folder.iterdir() if p.stem == stem and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    return hits[0] if hits else None


def find_ph2(root: str | Path) -> Layout:
    """PH2's pairs with their diagnoses (see the module docstring for the layout)."""
    root = require_dir(root, "--ph2_root")
    images_root = find_named_dir(root, ["PH2 Dataset images"], max_depth=2)
    if images_root is None:
        if any(re.fullmatch(ID_PATTERN, p.name) for p in root.iterdir() if p.is_dir()):
            images_root = root  # the user pointed at the image folder itself
        else:
            raise DataError(
                f"--ph2_root {root}: no 'PH2 Dataset images' folder and no IMDnnn folders "
                "found; pass the unpacked PH2Dataset folder"
            )
    layout = Layout([], source=root)
    txt = next(
        (
            p
            for p in (images_root.parent / "PH2_dataset.txt", root / "PH2_dataset.txt")
            if p.is_file()
        ),
        None,
    )
    if txt is None:
        diagnoses: dict[str, str] = {}
        layout.notes.append("PH2_dataset.txt not found: the split is not stratified by diagnosis")
    else:
        diagnoses = parse_diagnoses(txt)

    for case in sorted(p for p in images_root.iterdir() if p.is_dir()):
        cid = case.name
        if not re.fullmatch(ID_PATTERN, cid):
            continue
        image = _one_image(case / f"{cid}_Dermoscopic_Image", cid)
        mask = _one_image(case / f"{cid}_lesion", f"{cid}_lesion")
        if image is None and mask is None:
            layout.notes.append(f"{case} holds neither a dermoscopic image nor a lesion mask")
        elif mask is None:
            layout.unmatched_images.append(image)
        elif image is None:
            layout.unmatched_masks.append(mask)
        else:
            group = diagnoses.get(cid)
            if txt is not None and group is None:
                layout.notes.append(f"{cid} is not listed in {txt}")
            layout.samples.append(Sample(cid, image, mask, group))
    return layout


main = root_preparer(
    NAME,
    __doc__,
    "--ph2_root",
    "the unpacked PH2Dataset folder",
    find_ph2,
    default_split="140,20,40",
    id_pattern=ID_PATTERN,
)


if __name__ == "__main__":
    raise SystemExit(main())
