"""Benchmark VQM generation: masks per second on one core, and the target distribution.

    python -m benchmarks.vqm_throughput --masks ../shared/data/CVC-ClinicDB/masks --image_size 224
    python -m benchmarks.vqm_throughput --csv prepare_datasets/demo_data/train.csv --image_size 128
    python -m benchmarks.vqm_throughput --csv train.csv --image_size 224 --full_sample

Prints the throughput with the paper's category mix (or one given by flags), the mean
target, the fraction of targets in each 0.1 bin, and per category and per op the mean
target and how often the op left the mask unchanged (a no-op: labelled corrupted yet
Dice 1). With `--full_sample` it also times the whole g_phi training sample of
`data.mq_dataset.MQDataset` (cached image, joint augmentation, corruption, photometric
augmentation, tensor). Everything runs on one thread of one core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import cv2
import numpy as np

from data.io import load_labeled_arrays, load_labeled_csv, read_mask
from data.vqm_generator import CATEGORIES, PAPER_CATEGORY_PROBS, VQMConfig, VQMGenerator

MASK_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def load_masks(args: argparse.Namespace) -> np.ndarray:
    size = args.image_size
    if args.csv:
        split = load_labeled_csv(args.csv)
        return load_labeled_arrays(split, size, num_threads=1)[1]
    files = sorted(p for p in Path(args.masks).iterdir() if p.suffix.lower() in MASK_SUFFIXES)
    if not files:
        raise SystemExit(f"no mask files in {args.masks}")
    masks = [cv2.resize(read_mask(f), (size, size), interpolation=cv2.INTER_NEAREST) for f in files]
    return np.stack(masks)


def bench_masks(masks: np.ndarray, config: VQMConfig, n: int, seed: int) -> dict:
    gen = VQMGenerator(config, masks)
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(masks), n)
    targets = np.empty(n)
    by_cat: dict[str, list[float]] = defaultdict(list)
    by_op: dict[str, list[float]] = defaultdict(list)
    noop: dict[str, int] = defaultdict(int)
    t0 = time.perf_counter()
    for k, i in enumerate(order):
        s = gen.sample(masks[i], rng, index=int(i))
        targets[k] = s.quality
        by_cat[s.category].append(s.quality)
        if s.category not in ("chained", "cross_image"):
            by_op[s.op_name].append(s.quality)
            if s.category != "identity" and np.array_equal(s.mask, masks[i]):
                noop[s.op_name] += 1
    elapsed = time.perf_counter() - t0
    return {
        "rate": n / elapsed,
        "targets": targets,
        "by_cat": by_cat,
        "by_op": by_op,
        "noop": noop,
    }


def print_distribution(targets: np.ndarray) -> None:
    hist, _ = np.histogram(targets, bins=np.linspace(0, 1, 11))
    fractions = hist / len(targets)
    print(f"mean target {targets.mean():.3f}   median {np.median(targets):.3f}")
    print(
        "fraction per 0.1 bin: "
        + "  ".join(
            f"[{b / 10:.1f},{(b + 1) / 10:.1f}{']' if b == 9 else ')'} {f:.3f}"
            for b, f in enumerate(fractions)
        )
    )


def bench_full_sample(csv: str, image_size: int, n: int, seed: int) -> None:
    import torch

    from data.mq_dataset import MQDataset

    torch.set_num_threads(1)
    ds = MQDataset.for_training(csv, image_size=image_size, samples_per_image=50, seed=seed)
    for i in range(50):  # warm-up (noise bank, caches)
        ds[i]
    t0 = time.perf_counter()
    for i in range(n):
        ds[(i * 7919) % len(ds)]
    rate = n / (time.perf_counter() - t0)
    print(
        f"\nfull g_phi training sample ({image_size} px, uint8 tensors): {rate:,.0f} samples/s "
        "on one core"
    )
    t0 = time.perf_counter()
    batch = torch.stack([ds[i]["image"] for i in range(256)])
    masks = torch.stack([ds[i]["mask"] for i in range(256)])
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(4):
        from data.mq_dataset import quality_input

        quality_input(batch, masks)
    norm = (time.perf_counter() - t0) / 4 / 256
    print(
        f"  (of which on the training device: normalisation + 4-channel assembly "
        f"{norm * 1e6:.0f} us/sample on this CPU; ~{build / 256 * 1e6:.0f} us/sample to build)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", help="labeled split CSV (image_path,mask_path)")
    src.add_argument("--masks", help="folder of mask files")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_samples", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no_scale_with_size",
        action="store_true",
        help="use the paper's pixel sizes unscaled (as the release did)",
    )
    for c in CATEGORIES:
        parser.add_argument(f"--{c}_prob", type=float, default=PAPER_CATEGORY_PROBS[c])
    parser.add_argument("--per_op", action="store_true", help="print per-op statistics")
    parser.add_argument(
        "--full_sample",
        action="store_true",
        help="also time the whole g_phi training sample (needs --csv)",
    )
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    masks = load_masks(args)
    config = VQMConfig(
        category_probs={c: getattr(args, f"{c}_prob") for c in CATEGORIES},
        scale_with_size=not args.no_scale_with_size,
    )
    print(
        f"{len(masks)} masks at {args.image_size} px, mean foreground "
        f"{masks.mean():.3f}; scale_with_size={config.scale_with_size}"
    )
    bench_masks(masks, config, min(2000, args.num_samples), args.seed)  # warm-up
    r = bench_masks(masks, config, args.num_samples, args.seed + 1)
    print(f"\nVQM generation: {r['rate']:,.0f} masks/s on one core ({args.num_samples} samples)")
    print_distribution(r["targets"])
    print("\nper category: n, mean target")
    for c in CATEGORIES:
        q = r["by_cat"].get(c, [])
        if q:
            print(f"  {c:13s} {len(q):6d}  {np.mean(q):.3f}")
    noops = {k: v for k, v in r["noop"].items() if v}
    total_noop = sum(noops.values())
    print(
        f"\nno-ops (corrupted category, mask unchanged): {total_noop / args.num_samples:.2%} "
        "of all samples"
    )
    for name, count in sorted(noops.items(), key=lambda kv: -kv[1]):
        print(
            f"  {name:22s} {count / len(r['by_op'][name]):.1%} of its {len(r['by_op'][name])} draws"
        )
    if args.per_op:
        print("\nper op: n, mean target")
        for name, q in sorted(r["by_op"].items()):
            print(f"  {name:22s} {len(q):6d}  {np.mean(q):.3f}")
    if args.full_sample:
        if not args.csv:
            raise SystemExit("--full_sample needs --csv")
        bench_full_sample(args.csv, args.image_size, 3000, args.seed)


if __name__ == "__main__":
    main()
