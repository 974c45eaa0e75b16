"""The run engine every training script shares (docs/ARCHITECTURE.md): seeding, the run
folder, its records (args.json with the git commit, summary.csv), atomic best.pth /
latest.pth, exact resume, early stopping, non-finite loss checks and the `main()` wrapper.

A script keeps only its data, model and step; the engine owns everything around them:

    run = Run(ctx, args.output_dir, args.experiment_name, args.resume)
    stopper = EarlyStopping(args.patience, mode="max")
    point = run.resume(stopper, model=model, optimizer=optimizer, ...)   # None: fresh
    ... open the loaders an uninterrupted run had open (training.loaders) ...
    run.restore_rng(point)
    for epoch in range(point.epoch if point else 0, args.epochs):
        ...; improved = stopper.update(score, epoch)
        run.end_epoch(epoch, row, stopper, best=..., step=step, model=model, ...)
        if stopper.stop: break

Every checkpoint holds tensors and plain Python values only, so each one loads with
``torch.load(..., weights_only=True)``: loading a checkpoint never runs code.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from training.distributed import DistContext, broadcast_object, cleanup_distributed

# --------------------------------------------------------------------------------------
# Seeds and RNG states
# --------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may use the global RNG
    torch.manual_seed(seed)  # also seeds CUDA devices when present


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values (weights_only-loadable)."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 - the global RNG is state too
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():  # only where there is a GPU: CPU runs hold no CUDA state
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore `capture_rng_state`'s states. torch wants CPU byte tensors, which a checkpoint
    loaded with map_location=cuda no longer holds: move them back first."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        {
            "bit_generator": "MT19937",
            "state": {"key": npy["key"].cpu().numpy().astype(np.uint32), "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# --------------------------------------------------------------------------------------
# Records: args.json, summary.csv, JSON and checkpoint files
# --------------------------------------------------------------------------------------


def git_commit() -> str | None:
    """The project's git commit (with '-dirty' when the tree has changes), if available."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def plain(value: Any) -> Any:
    """`value` as JSON-like plain Python (paths and numpy scalars to str / float / int)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_json(obj: Any, path: str | Path) -> None:
    """JSON written atomically (a crash never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint of this project, loaded without running code (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle of foreign classes
        raise ValueError(f"{path} is not a readable checkpoint of this project: {exc}") from None


class SummaryCSV:
    """One row per epoch in summary.csv (timm's update_summary, in spirit). The header is
    fixed by the first row written; a resumed run appends under the existing header."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fields: list[str] | None = None
        if self.path.exists():
            with self.path.open() as f:
                self.fields = next(csv.reader(f), None)

    def append(self, row: Mapping[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})

    def truncate(self, last_epoch: int) -> None:
        """Drop the rows of epochs after `last_epoch` (a resumed run re-runs them)."""
        if not self.path.exists():
            return
        with self.path.open() as f:
            rows = list(csv.reader(f))
        if not rows or "epoch" not in rows[0]:
            return
        col = rows[0].index("epoch")
        kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[col])) <= last_epoch]
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerows(kept)


# --------------------------------------------------------------------------------------
# Early stopping and numerical safety
# --------------------------------------------------------------------------------------


class EarlyStopping:
    """The best validation score so far and the epochs since it (docs/METHOD.md §3.3, §4.6).

    mode "min" (g_phi's validation loss) or "max" (f_theta's validation Dice). The run stops
    once `patience` epochs in a row brought no improvement; epochs before `count_from` are
    never counted (Phase 2 starts counting once lambda has reached its final value, §4.6),
    though a best found there is still the best.
    """

    def __init__(self, patience: int, mode: str = "min", count_from: int = 0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'min' or 'max', got {mode!r}")
        self.patience, self.mode, self.count_from = int(patience), mode, int(count_from)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch, self.bad_epochs = -1, 0

    def update(self, score: float, epoch: int) -> bool:
        """Record the epoch's score; True when it is a new best."""
        improved = score < self.best if self.mode == "min" else score > self.best
        if improved:
            self.best, self.best_epoch, self.bad_epochs = float(score), int(epoch), 0
        elif epoch >= self.count_from:
            self.bad_epochs += 1
        return improved

    @property
    def stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch, self.bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; names the step and the term."""


def check_loss_finite(
    loss: torch.Tensor,
    terms: Mapping[str, torch.Tensor | float],
    epoch: int,
    step: int,
    ctx: DistContext,
) -> None:
    """Stop with a message naming the epoch, step and loss term when the loss is not finite.

    One host sync per step (`loss.item()`) plus, under DDP, one all-reduce of the verdict,
    so that all ranks stop together instead of waiting in the next gradient all-reduce.
    """
    finite = math.isfinite(loss.item())
    if ctx.distributed:
        flag = torch.tensor([1.0 if finite else 0.0], device=ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if flag.item() == 0.0 and finite:
            raise NonFiniteLossError(
                f"another process's loss is not finite at epoch {epoch}, step {step} (its "
                "message names the term); stopping. The last good checkpoint is left intact."
            )
    if finite:
        return
    for name, value in {**terms, "loss": loss}.items():
        v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(v):
            raise NonFiniteLossError(
                f"loss term {name!r} is {v} at epoch {epoch}, step {step}; stopping. The last "
                "good checkpoint (latest.pth / best.pth) is left intact."
            )


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


class RunFolderExists(RuntimeError):
    """The run folder already holds a run and --resume was not given."""


# What a run folder holds before the first epoch ends (the run record, written at start).
BEFORE_FIRST_CHECKPOINT = frozenset({"args.json"})


def prepare_run_dir(output_dir: str | Path, experiment_name: str, resume: bool) -> Path:
    """Create OUTPUT_DIR/EXPERIMENT_NAME; never reuse a folder that holds a run unless asked
    to resume it."""
    run_dir = Path(output_dir) / experiment_name
    holds_files = run_dir.is_dir() and any(run_dir.iterdir())
    if holds_files and not resume:
        raise RunFolderExists(
            f"run folder {run_dir} already exists and is not empty; pass --resume to continue "
            "it from latest.pth, or choose another --experiment_name / --output_dir"
        )
    if holds_files and not (run_dir / "latest.pth").exists():
        if {f.name for f in run_dir.iterdir()} <= BEFORE_FIRST_CHECKPOINT:
            # Killed before its first epoch ended: nothing to continue, nothing to lose.
            print(f"--resume: {run_dir} has no checkpoint yet; starting it afresh", flush=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            return run_dir
        raise RunFolderExists(
            f"--resume: run folder {run_dir} holds files but no latest.pth to continue "
            "from; choose another --experiment_name / --output_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues: its first epoch, its global step, the RNG states."""

    epoch: int
    step: int
    rng: Mapping[str, Any]


class Run:
    """One run folder (OUTPUT_DIR/EXPERIMENT_NAME) and what goes into it. Rank 0 creates
    the folder and writes every file; the other ranks learn of a refusal by broadcast."""

    def __init__(
        self, ctx: DistContext, output_dir: str | Path, experiment_name: str, resume: bool
    ) -> None:
        self.ctx, self.resume_requested = ctx, bool(resume)
        self.dir = Path(output_dir) / experiment_name
        error = None
        if ctx.is_main:
            try:
                prepare_run_dir(output_dir, experiment_name, resume)
            except RunFolderExists as exc:
                error = str(exc)
        error = broadcast_object(error, ctx)
        if error:
            raise SystemExit(f"error: {error}")
        self.summary = SummaryCSV(self.dir / "summary.csv") if ctx.is_main else None
        self._epoch_start = time.time()
        self.total = 0

    def log(self, message: str) -> None:
        """A line on the console, from rank 0 only."""
        if self.ctx.is_main:
            print(message, flush=True)

    def epochs(self, point: ResumePoint | None, first: int, stop: int) -> Iterator[int]:
        """The epochs left to train, from `first` (or where a resumed run stops) to `stop`
        exclusive; each one timed for its summary row."""
        self.total = stop
        for epoch in range(point.epoch if point else first, stop):
            self._epoch_start = time.time()
            yield epoch

    @property
    def latest(self) -> Path:
        return self.dir / "latest.pth"

    @property
    def best(self) -> Path:
        return self.dir / "best.pth"

    def write_record(self, args: argparse.Namespace | Mapping[str, Any], **extra: Any) -> None:
        """args.json: resolved arguments, command line, git commit, library versions."""
        if not self.ctx.is_main:
            return
        record = {
            "args": plain(vars(args) if isinstance(args, argparse.Namespace) else dict(args)),
            "command": " ".join(sys.argv),
            "git_commit": git_commit(),
            "torch": torch.__version__,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "world_size": self.ctx.world_size,
            **extra,
        }
        write_json(record, self.dir / "args.json")

    def save(self, obj: Any, name: str) -> None:
        """An atomic checkpoint file in the run folder (rank 0)."""
        if self.ctx.is_main:
            atomic_save(obj, self.dir / name)

    def resume(
        self, stopper: EarlyStopping | None = None, **components: Stateful
    ) -> ResumePoint | None:
        """Load latest.pth into `components` (model, optimiser, scheduler, scaler, EMA ...,
        each by its state_dict) and `stopper`; summary.csv loses the rows of later epochs.

        Returns None for a fresh run. The RNG states are not restored yet: call
        `restore_rng` once the loaders the interrupted run had open are open again.
        """
        if not (self.resume_requested and self.latest.exists()):
            return None
        state = load_checkpoint(self.latest, map_location=self.ctx.device)
        missing = [k for k in components if k not in state["components"]]
        if missing:
            raise ValueError(f"{self.latest} has no state for {missing}; it is another run's")
        for name, component in components.items():
            component.load_state_dict(state["components"][name])
        if stopper is not None:
            stopper.load_state_dict(state["stopper"])
        epoch = int(state["epoch"])
        if self.summary is not None:
            self.summary.truncate(epoch)
        first = epoch + 1
        if stopper is not None and stopper.stop:
            first = sys.maxsize  # it had stopped early: train no further
        if self.ctx.is_main:
            print(f"resuming {self.dir} after epoch {epoch + 1}", flush=True)
        return ResumePoint(first, int(state["step"]), state["rng"])

    @staticmethod
    def restore_rng(point: ResumePoint | None) -> None:
        if point is not None:
            restore_rng_state(point.rng)

    def end_epoch(
        self,
        epoch: int,
        row: Mapping[str, Any],
        stopper: EarlyStopping | None,
        step: int = 0,
        best: Callable[[], Any] | None = None,
        line: str | None = None,
        **components: Stateful,
    ) -> None:
        """The epoch's summary row (its time added), then best.pth (`best()`, called only on
        improvement), then latest.pth: a run killed at any point resumes from a consistent
        state. `line` is printed as `epoch E/N: line [*] | Ts`; an early stop is announced."""
        if not self.ctx.is_main:
            return
        seconds = time.time() - self._epoch_start
        improved = stopper is not None and stopper.best_epoch == epoch
        if line is not None:
            mark = " *" if improved else ""
            print(f"epoch {epoch + 1}/{self.total}: {line}{mark} | {seconds:.0f}s", flush=True)
        if stopper is not None and stopper.stop:
            print(
                f"early stop: no validation improvement for {stopper.patience} epochs "
                f"(best epoch {stopper.best_epoch + 1})",
                flush=True,
            )
        self.summary.append({**row, "seconds": seconds})
        if best is not None and improved:
            self.save(best(), "best.pth")
        self.save(
            {
                "epoch": epoch,
                "step": step,
                "components": {k: c.state_dict() for k, c in components.items()},
                "stopper": stopper.state_dict() if stopper is not None else None,
                "rng": capture_rng_state(),
            },
            "latest.pth",
        )


# --------------------------------------------------------------------------------------
# main()
# --------------------------------------------------------------------------------------


class UserError(Exception):
    """Bad input or settings: the message names the file, row or argument at fault."""


# Errors whose message says what is wrong: shown without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    NonFiniteLossError,
    FileNotFoundError,
    ValueError,
)


def run_main(train: Callable[[], Any]) -> Any:
    """Run `train()`; bad input or a NaN loss ends with `error: <message>` and exit code 1
    instead of a traceback, and the process group is always torn down."""
    try:
        return train()
    except USER_ERRORS as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        cleanup_distributed()
