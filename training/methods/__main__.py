"""The method table for scripts: `python -m training.methods --list`, and the flags of one
method from the release's script variables: `python -m training.methods --script_args NAME`.

--list prints one tab-separated line per method, in the paper's row order:
name, acronym, needs g_phi (0/1), needs D_U (0/1), lambda defaults (initial final warmup
rampup, space-separated); `--list --multitask` the same for the multi-task methods
(VerSemi, Pooled), which train over a task table.
--script_args prints, one per line, the flags of the script variables that are set in the
environment for that method (train_SSL_methods.sh exports them): nothing else is passed,
so every unset setting keeps the method's own default.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # runnable by path

from training.methods import METHODS, MULTITASK_METHODS, get_method
from training.methods.versemi import PER_TASK_BASELINES


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.methods", description=__doc__)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--list", action="store_true", help="the method table")
    g.add_argument("--script_args", metavar="METHOD", help="a method's flags from the environment")
    g.add_argument(
        "--versemi_baselines",
        action="store_true",
        help="the single-data-set methods VerSemi's comparison trains on each task alone",
    )
    p.add_argument("--multitask", action="store_true", help="--list the multi-task methods")
    args = p.parse_args(argv)
    if args.versemi_baselines:
        print(" ".join(PER_TASK_BASELINES))
        return
    if args.list:
        for cls in (MULTITASK_METHODS if args.multitask else METHODS).values():
            lam = " ".join(f"{v:g}" for v in cls.lambda_defaults)
            quality, unlabeled = int(cls.uses_quality), int(cls.needs_unlabeled)
            print(f"{cls.name}\t{cls.acronym}\t{quality}\t{unlabeled}\t{lam}")
        return
    try:
        cls = get_method(args.script_args)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    sys.stdout.write("".join(f"{a}\n" for a in cls.script_arguments(dict(os.environ))))


if __name__ == "__main__":
    main()
