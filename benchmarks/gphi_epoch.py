"""One g_phi training epoch, timed end to end through training/train_mq.py, in several
settings and against another checkout of this project, side by side in one run.

    python -m benchmarks.gphi_epoch --train_csv PH2/train.csv --val_csv PH2/val.csv
    python -m benchmarks.gphi_epoch --train_csv ... --val_csv ... --baseline /path/to/old/checkout

The settings are the release's own (128 px, K = 10, batch 32, ResNet18, no loader workers,
no weak models, random init so that no download is needed). Each setting runs one epoch in a
fresh process and reports summary.csv's epoch time (training plus the validation pass),
so the figures include data loading and VQM generation, as a user's epoch does. Machines'
speed drifts from day to day: compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The release's g_phi epoch (docs/METHOD.md §3.3 lists the paper's; these are its script's)
RELEASE_SETTINGS = [
    "--image_size", "128", "--samples_per_image", "10", "--samples_per_image_val", "5",
    "--batch_size", "32", "--backbone", "resnet18.a1_in1k", "--pretrained", "false",
    "--num_workers", "0", "--use_weak_models", "false", "--epochs", "1",
]  # fmt: skip

# (label, extra flags) for this checkout: the full-precision floor and the defaults
MODES = {
    "fp32, eager": ["--mixed_precision", "no", "--compile", "off"],
    "defaults (auto precision, auto compile)": [],
}


def epoch_seconds(checkout: Path, args: argparse.Namespace, extra: list[str], out: Path) -> float:
    """Epoch 0's seconds from summary.csv of one train_mq.py run in `checkout`."""
    name = f"run{len(list(out.glob('run*')))}"
    cmd = [
        sys.executable, str(checkout / "training" / "train_mq.py"),
        "--train_csv", args.train_csv, "--val_csv", args.val_csv,
        "--output_dir", str(out), "--experiment_name", name, *RELEASE_SETTINGS, *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rows = list(csv.DictReader((out / name / "summary.csv").open()))
    return float(rows[0]["seconds"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train_csv", required=True)
    p.add_argument("--val_csv", required=True)
    p.add_argument(
        "--baseline", type=Path, default=None, help="another checkout of this project, run first"
    )
    args = p.parse_args(argv)
    args.train_csv, args.val_csv = (str(Path(c).resolve()) for c in (args.train_csv, args.val_csv))

    rows = []
    with tempfile.TemporaryDirectory(prefix="gphi_epoch_") as tmp:
        out = Path(tmp)
        if args.baseline is not None:
            seconds = epoch_seconds(args.baseline.resolve(), args, [], out)
            rows.append((f"baseline {args.baseline} (its defaults)", seconds))
            print(f"{rows[-1][0]}: {seconds:.1f} s", flush=True)
        for label, extra in MODES.items():
            seconds = epoch_seconds(REPO, args, extra, out)
            rows.append((f"this checkout, {label}", seconds))
            print(f"{rows[-1][0]}: {seconds:.1f} s", flush=True)
    first = rows[0][1]
    print(f"\ng_phi epoch, release settings, {os.cpu_count()} CPUs:")
    for label, seconds in rows:
        print(f"  {label:70s} {seconds:7.1f} s  {seconds / first:5.2f}x")


if __name__ == "__main__":
    main()
