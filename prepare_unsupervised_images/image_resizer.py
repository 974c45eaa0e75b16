"""Resizing folders of unlabeled images: parallel, resumable, fast on large JPEGs.

One module behind `resize_isic2020_images.py` and `resize_colon_unlabeled_images.py`
(and `benchmarks/resize_throughput.py`); the resize and the reduced-scale decode are
`data.image_resize`'s and `data.io`'s, the ones every loader and preparer uses.

Speed: ISIC 2020 photographs are up to 6000 x 4000 JPEGs, and decoding them whole costs
far more than the resize. libjpeg can decode straight to 1/2, 1/4 or 1/8 scale (its IDCT
skips the high frequencies), which OpenCV exposes as IMREAD_REDUCED_COLOR_2/4/8; the
largest reduction that still leaves at least the target size is taken, read from the
file's header, then the image is area-resized as usual. Entropy decoding still reads
every coefficient, so the gain is about 3x per core on 4000 x 3000 photographs, not 64x
(benchmarks/resize_throughput.py). Other formats decode whole.

Resuming: each output is written to a temporary name and renamed when complete, so an
existing output is a finished one and is skipped; an interrupted run picks up where it
stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import cv2
from tqdm import tqdm

from data.image_resize import DEFAULT_IMAGE_SIZE, INTERPOLATIONS
from data.io import DataError, header_size, read_for_resize
from prepare_datasets.cli import require_dir
from prepare_datasets.output_folder import require_outside, write_image
from prepare_datasets.pairing import list_image_files
from prepare_datasets.resizing import ResizeSettings

DEFAULT_EXCLUDES = ("*mask*", "*ground truth*", "*groundtruth*")


def resize_file(
    src: Path, dst: Path, resize: ResizeSettings, reduced: bool = True, jpeg_quality: int = 95
) -> None:
    """Resize one image file into `dst` (format from its extension), atomically."""
    image = resize.image(read_for_resize(src, resize.size, resize.keep_aspect, reduced))
    dst.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the extension, which tells OpenCV the format.
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.{threading.get_ident()}.partial{dst.suffix}")
    try:
        write_image(tmp, image, jpeg_quality)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class ResizeReport:
    """What a run did: written, skipped (already done) and failed (with the reason)."""

    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def resize_files(
    jobs: Sequence[tuple[Path, Path]],
    size: int,
    keep_aspect: bool = False,
    interpolation: str = "area",
    reduced: bool = True,
    jpeg_quality: int = 95,
    num_workers: int | None = None,
    progress: bool = True,
    desc: str = "resize",
) -> ResizeReport:
    """Resize (source, destination) pairs in parallel threads, skipping finished outputs.

    OpenCV releases the GIL while decoding and resizing, so threads use every core; each
    call runs OpenCV single-threaded so that the workers do not oversubscribe the cores.
    """
    report = ResizeReport()
    todo = []
    for src, dst in jobs:
        if not dst.is_file():
            todo.append((src, dst))
        elif (found := header_size(dst)) == (size, size):
            report.skipped += 1  # finished by an earlier run
        else:
            # Never overwritten: it may be another run's output at another size, or not ours.
            report.failed.append(
                f"{dst} exists with size {found}, not {size} x {size}: remove it or write to "
                "another folder"
            )
    if not todo:
        return report
    num_workers = max(1, num_workers or os.cpu_count() or 1)
    resize = ResizeSettings(size, keep_aspect, interpolation)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)

    def work(job: tuple[Path, Path]) -> str | None:
        try:
            resize_file(job[0], job[1], resize, reduced, jpeg_quality)
        except DataError as exc:
            return str(exc)
        except (OSError, cv2.error) as exc:
            return f"{job[0]}: {exc}"
        return None

    try:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            for err in tqdm(
                pool.map(work, todo),
                total=len(todo),
                desc=desc,
                unit="img",
                disable=not progress,
                dynamic_ncols=True,
            ):
                if err is None:
                    report.written += 1
                else:
                    report.failed.append(err)
    finally:
        cv2.setNumThreads(previous)
    return report


def list_images(
    folder: Path, recursive: bool = True, exclude: Iterable[str] = DEFAULT_EXCLUDES
) -> list[Path]:
    """Image files under `folder` (`list_image_files`), minus those inside hidden folders
    and paths matching an exclude pattern.

    Patterns are shell globs on the path relative to `folder`, case-insensitive, so
    `*mask*` drops mask files and anything inside a `masks` folder.
    """
    patterns = [p.casefold() for p in exclude if p]
    out = []
    for p in list_image_files(folder, recursive):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if any(fnmatch(rel.as_posix().casefold(), pat) for pat in patterns):
            continue
        out.append(p)
    return out


# --------------------------------------------------------------------------------------
# Command line shared by the resizers
# --------------------------------------------------------------------------------------


def add_folder_arguments(p: argparse.ArgumentParser, input_help: str, default_output: str) -> None:
    """`--input_dir` (the sources) and `--output_dir` of a resizer."""
    p.add_argument("--input_dir", required=True, help=input_help)
    p.add_argument("--output_dir", default=default_output, help="default: %(default)s")


def input_and_output(a: argparse.Namespace) -> tuple[Path, Path]:
    """The parsed `--input_dir` (an existing folder) and `--output_dir` (outside it)."""
    input_dir = require_dir(a.input_dir, "--input_dir")
    output_dir = Path(a.output_dir).expanduser()
    require_outside(output_dir, input_dir, "--input_dir")
    return input_dir, output_dir


def add_resize_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by the unlabeled-image resizers."""
    p.add_argument(
        "--image_size", type=int, default=DEFAULT_IMAGE_SIZE, help="default: %(default)s"
    )
    p.add_argument(
        "--keep_aspect", action="store_true", help="pad to a square instead of stretching"
    )
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default="area")
    p.add_argument(
        "--jpeg_quality", type=int, default=95, help="for JPEG outputs (default: %(default)s)"
    )
    p.add_argument(
        "--no_reduced_decode",
        action="store_true",
        help="decode JPEGs at full size (slower; for comparison)",
    )
    p.add_argument(
        "--num_workers", type=int, default=os.cpu_count() or 1, help="threads (default: all cores)"
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")


def run_resize_jobs(jobs: list[tuple[Path, Path]], a: argparse.Namespace, desc: str) -> int:
    """Resize the jobs with the parsed options; print a summary; 0 when none failed."""
    start = time.perf_counter()
    report = resize_files(
        jobs,
        a.image_size,
        a.keep_aspect,
        a.interpolation,
        reduced=not a.no_reduced_decode,
        jpeg_quality=a.jpeg_quality,
        num_workers=a.num_workers,
        progress=not a.no_progress,
        desc=desc,
    )
    took = time.perf_counter() - start
    print(
        f"{report.written} resized, {report.skipped} already done, {len(report.failed)} failed "
        f"in {took:.1f} s"
    )
    if report.failed:
        shown = "\n  ".join(report.failed[:10])
        more = f"\n  ... and {len(report.failed) - 10} more" if len(report.failed) > 10 else ""
        print(f"error: {len(report.failed)} image(s) failed:\n  {shown}{more}", file=sys.stderr)
        return 2
    return 0
