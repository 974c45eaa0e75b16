"""The folder a preparer writes, and the manifest that says what it holds.

A manifest (JSON) names its generator, what was asked, every file written and whether the
writing completed. A folder holding the same preparation, complete, is left as it is; one
holding anything else is refused unless ``--overwrite``, and even then only files that an
earlier manifest listed are deleted. Files are written whole or not at all. Shared by the
labeled-set pipeline, the demo generator and the unlabeled-set scripts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from data.io import DataError


def write_image(path: Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB (or grey) uint8 array; the format follows the file extension."""
    array = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    )
    if not cv2.imwrite(str(path), array, params):
        raise DataError(f"cannot write {path}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file whole or not at all (a crash leaves the old file or none)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_tables(
    tables: dict[str, pd.DataFrame], output_dir: Path, overwrite: bool = False
) -> None:
    """Write `<name>.csv` per table. An existing CSV of that name with other contents is
    refused unless `overwrite`, before anything is written; identical ones stay as they are."""
    texts = {name: t.to_csv(index=False, lineterminator="\n") for name, t in tables.items()}
    differ = [
        name
        for name, text in texts.items()
        if (output_dir / f"{name}.csv").exists()
        and (output_dir / f"{name}.csv").read_text() != text
    ]
    if differ and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds different {', '.join(f'{n}.csv' for n in differ)}; "
            "pass --overwrite to replace them, or choose another --output_dir"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        path = output_dir / f"{name}.csv"
        if not path.exists() or path.read_text() != text:
            write_text_atomic(path, text)


def path_for_csv(target: Path, csv_dir: Path) -> str:
    """A CSV path entry: relative to the CSV's folder when inside it (the folder can move
    as a whole), else absolute (a relative `../` path would break when the CSV moves)."""
    target = Path(os.path.abspath(target))
    csv_dir = Path(os.path.abspath(csv_dir))
    try:
        return target.relative_to(csv_dir).as_posix()
    except ValueError:
        return target.as_posix()


def is_inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it (neither need exist)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def require_outside(output_dir: Path, source: Path, source_argument: str) -> None:
    """A DataError unless `output_dir` lies outside the source folder an argument names."""
    if is_inside(output_dir, source):
        raise DataError(
            f"--output_dir must lie outside {source_argument} (sources are never modified)"
        )


@dataclass(frozen=True)
class ManifestFile:
    """Where a kind of preparation records itself: file name, generator, JSON indentation,
    and the version of what it writes (bump it when the written pixels or CSVs change, so
    that an old folder is not silently reused)."""

    name: str
    generator: str
    indent: int = 1
    format_version: int = 1

    def read(self, output_dir: Path) -> dict | None:
        """The manifest in `output_dir`, or None (none there, or not this generator's)."""
        try:
            manifest = json.loads((output_dir / self.name).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("generator") != self.generator:
            return None
        return manifest if isinstance(manifest.get("files"), list) else None

    def write(self, output_dir: Path, manifest: dict) -> None:
        """Write the manifest into `output_dir`, whole or not at all."""
        text = json.dumps(manifest, indent=self.indent) + "\n"
        write_text_atomic(output_dir / self.name, text)


def _own_file(output_dir: Path, rel: object) -> Path | None:
    """A manifest entry as a path inside `output_dir`, or None if it points elsewhere."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return None
    return output_dir / rel


def _has_contents(output_dir: Path) -> bool:
    """Whether the folder holds anything besides hidden files (a `.gitkeep` is no data)."""
    return output_dir.is_dir() and any(not p.name.startswith(".") for p in output_dir.iterdir())


def visible_names(output_dir: Path, shown: int = 5) -> str:
    """The first names a folder holds, for a message (`a, b, c, ...`)."""
    names = sorted(p.name for p in output_dir.iterdir() if not p.name.startswith("."))
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def claim_output_folder(
    output_dir: Path,
    manifest: ManifestFile,
    files: Sequence[str],
    same: Callable[[dict], bool],
    describe: Callable[[dict | None], str],
    overwrite: bool,
    redo_unfinished: bool = False,
) -> bool:
    """Make `output_dir` ready for a preparation that writes `files` (paths relative to it).

    `same(old)` tells whether the folder's manifest `old` records this very preparation.
    Returns True when that preparation is there, complete: nothing to do. An unfinished
    same preparation is redone in place. A folder holding anything else raises
    FileExistsError, worded by `describe(old)`, unless `overwrite` (or `redo_unfinished`
    and `old` is unfinished); then the files `old` lists and `files` does not are deleted,
    and no other. The folders of `files` are created.
    """
    old = manifest.read(output_dir)
    is_same = old is not None and same(old)
    complete = old is not None and old.get("status") == "complete"
    if is_same and complete and all((output_dir / f).is_file() for f in files):
        return True
    unfinished = redo_unfinished and old is not None and not complete
    if _has_contents(output_dir) and not is_same and not unfinished and not overwrite:
        raise FileExistsError(
            f"--output_dir {output_dir} already holds {describe(old)}; pass --overwrite to "
            "replace it, or choose another --output_dir"
        )
    if old is not None and not is_same:
        keep = set(files)
        for rel in old["files"]:
            path = _own_file(output_dir, rel)
            if path is not None and rel not in keep and path.is_file():
                path.unlink()
    for folder in sorted({(output_dir / f).parent for f in files}):
        folder.mkdir(parents=True, exist_ok=True)
    return False
