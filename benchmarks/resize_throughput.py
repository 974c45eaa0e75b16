"""Throughput of the unlabeled-image resizer on large JPEGs, full vs reduced-scale decoding.

    python -m benchmarks.resize_throughput [--num_images 8] [--width 4000] [--height 3000]

Writes synthetic photographs (smooth colour fields with fine texture, JPEG quality 90, the
size of an ISIC 2020 image) to a temporary folder, then times, on one core (OpenCV
single-threaded, files in the page cache):

* decode + resize: `data.io.read_for_resize` + `resize_image`, the resizer's inner step;
* end to end: `resize_files` with one worker, writing 224 x 224 JPEGs;

each with full decoding and with libjpeg's reduced-scale decoding (the resizer's default),
and the all-core rate of `resize_files`. It also reports how far apart the two outputs
are (PSNR), to show that the shortcut does not cost image quality.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

import cv2
import numpy as np

from data.image_resize import reduction_factor, resize_image
from data.io import read_for_resize
from prepare_unsupervised_images.image_resizer import resize_files


def make_photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A photograph-like BGR image: smooth colour field, a darker blob, fine texture."""
    field = rng.uniform(60, 220, size=(12, 16, 3)).astype(np.float32)
    image = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    blob = np.exp(
        -(((xx - width / 2) / (width / 5)) ** 2 + ((yy - height / 2) / (height / 5)) ** 2)
    )
    image *= (1.0 - 0.5 * blob)[..., None]
    image += rng.normal(0.0, 6.0, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _time_decode_resize(paths: Sequence[Path], size: int, reduced: bool, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        for p in paths:
            resize_image(read_for_resize(p, size, False, reduced), size)
    return repeats * len(paths) / (time.perf_counter() - start)


def _time_end_to_end(
    paths: Sequence[Path], out_dir: Path, size: int, reduced: bool, workers: int
) -> float:
    jobs = [(p, out_dir / p.name) for p in paths]
    start = time.perf_counter()
    report = resize_files(jobs, size, reduced=reduced, num_workers=workers, progress=False)
    took = time.perf_counter() - start
    assert report.written == len(paths) and not report.failed, report
    return len(paths) / took


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--num_images", type=int, default=8)
    p.add_argument("--width", type=int, default=4000)
    p.add_argument("--height", type=int, default=3000)
    p.add_argument("--size", type=int, default=224, help="output side")
    p.add_argument("--repeats", type=int, default=2, help="passes over the images per timing")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="for the all-core run")
    a = p.parse_args(argv)

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="resize_bench_") as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(a.num_images):
            path = tmp / f"photo_{i:03d}.jpg"
            cv2.imwrite(
                str(path), make_photo(rng, a.width, a.height), [cv2.IMWRITE_JPEG_QUALITY, 90]
            )
            paths.append(path)
        mb = np.mean([q.stat().st_size for q in paths]) / 1e6
        factor = reduction_factor(a.width, a.height, a.size, keep_aspect=False)
        print(
            f"{a.num_images} JPEGs {a.width} x {a.height} ({mb:.1f} MB each) -> "
            f"{a.size} x {a.size}; "
            f"reduced decoding at 1/{factor}; OpenCV {cv2.__version__}, {os.cpu_count()} cores"
        )
        for q in paths:  # page cache
            q.read_bytes()

        previous = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            rows = []
            for label, reduced in (("full decode", False), ("reduced decode", True)):
                rate = _time_decode_resize(paths, a.size, reduced, a.repeats)
                out = tmp / ("out_reduced" if reduced else "out_full")
                e2e = _time_end_to_end(paths, out, a.size, reduced, workers=1)
                rows.append((label, rate, e2e))
        finally:
            cv2.setNumThreads(previous)
        all_core = {}
        for reduced in (False, True):
            out = tmp / f"out_all_{int(reduced)}"
            all_core[reduced] = _time_end_to_end(paths, out, a.size, reduced, a.workers)

        print(f"{'':<16}{'decode+resize':>16}{'end to end':>14}{f'{a.workers} workers':>14}")
        print(f"{'':<16}{'img/s/core':>16}{'img/s/core':>14}{'img/s total':>14}")
        for (label, rate, e2e), reduced in zip(rows, (False, True)):
            print(f"{label:<16}{rate:>16.1f}{e2e:>14.1f}{all_core[reduced]:>14.1f}")
        print(
            f"speed-up {rows[1][1] / rows[0][1]:.1f}x (decode+resize), "
            f"{rows[1][2] / rows[0][2]:.1f}x (end to end)"
        )
        psnrs = [
            _psnr(
                resize_image(read_for_resize(q, a.size, False, False), a.size),
                resize_image(read_for_resize(q, a.size, False, True), a.size),
            )
            for q in paths
        ]
        print(f"full vs reduced outputs: PSNR {np.mean(psnrs):.1f} dB (mean over images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
