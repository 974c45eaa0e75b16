"""Benchmark the Phase 2 data sets: items per second on one core, from the in-memory cache.

    python -m benchmarks.seg_loader_throughput
    python -m benchmarks.seg_loader_throughput --image_size 224 --num_items 3000 --batch_size 32

A synthetic in-memory set (random-texture images with an elliptic lesion) stands in for the
decoded cache, so the figures measure what a loader worker does per step: the labeled
training view (flips, +-20 deg rotation, brightness/contrast), the unlabeled weak view
(flips) and the un-augmented validation view, each with and without default collate into
batches (collate runs in the workers too). One thread of one core: divide a GPU step's
need (e.g. 32 labeled + 64 unlabeled per step) by these rates to size --num_workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import cv2
import numpy as np
import torch
from torch.utils.data import default_collate

from data.seg_datasets import LabeledSegDataset, UnlabeledSegDataset


def synthetic_cache(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, S, S, 3), masks (n, S, S)) uint8: smooth texture plus an ellipse."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, size // 8, size // 8, 3), dtype=np.uint8)
    images = np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_LINEAR) for s in small])
    masks = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        centre = tuple(int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
        axes = tuple(int(v) for v in rng.integers(size // 8, size // 3, 2))
        cv2.ellipse(masks[k], centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        images[k][masks[k] > 0] //= 2  # a darker lesion
    return images, masks


def rate(fn: Callable[[int], object], count: int) -> float:
    """Calls of fn(i) per second over `count` calls, after a short warm-up."""
    for i in range(min(50, count)):
        fn(i)
    t0 = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - t0)


def batched_rate(dataset, batch_size: int, num_batches: int) -> float:
    """Items per second, building `num_batches` default-collated batches."""
    n = len(dataset)

    def batch(b: int) -> object:
        start = (b * batch_size * 7919) % (1 << 30)  # spread over epochs and images
        return default_collate([dataset[n + (start + j) % (50 * n)] for j in range(batch_size)])

    return rate(batch, num_batches) * batch_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_images", type=int, default=256, help="size of the synthetic set")
    parser.add_argument("--num_items", type=int, default=3000, help="items timed per view")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    images, masks = synthetic_cache(args.num_images, args.image_size, args.seed)
    n = len(images)
    views = {
        "labeled, augmented (flips, rotation, brightness/contrast)": LabeledSegDataset.from_arrays(
            images, masks, augment=True, seed=args.seed
        ),
        "labeled, validation (no augmentation)": LabeledSegDataset.from_arrays(
            images, masks, augment=False
        ),
        "unlabeled, weak view (flips)": UnlabeledSegDataset.from_arrays(
            images, augment=True, seed=args.seed
        ),
    }
    print(
        f"{n} synthetic images at {args.image_size} px, uint8 items, one thread of one core "
        f"(torch {torch.__version__}, OpenCV {cv2.__version__})"
    )
    num_batches = max(1, args.num_items // args.batch_size)
    for name, ds in views.items():
        # Indices n + ... are epochs >= 1: every call draws a fresh augmentation.
        items = rate(lambda i, ds=ds: ds[n + (i * 7919) % (50 * n)], args.num_items)
        batches = batched_rate(ds, args.batch_size, num_batches)
        print(
            f"  {name:58s} {items:8,.0f} items/s   with collate into batches of "
            f"{args.batch_size}: {batches:8,.0f} items/s"
        )


if __name__ == "__main__":
    main()
