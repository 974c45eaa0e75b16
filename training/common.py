"""Training plumbing shared by every script: seeding, devices, distributed runs (torchrun),
run folders, argument records, atomic checkpoints, per-epoch summaries, mixed precision.

One process per device: the same script runs on a CPU, one GPU, or several GPUs and nodes
when launched with ``torchrun --nproc_per_node N -m training.<script> ...`` (DDP; NCCL on
CUDA, gloo on CPU). Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

# --------------------------------------------------------------------------------------
# Seeds and devices
# --------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may use the global RNG
    torch.manual_seed(seed)  # also seeds CUDA devices when present


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's CUDA device when available, else CPU; or an explicit device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


# --------------------------------------------------------------------------------------
# Distributed (torchrun)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistContext:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Set up DDP from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), if present."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            timeout=datetime.timedelta(minutes=30),
        )
    return DistContext(rank, world_size, local_rank, dev)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list when not distributed)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def reduce_mean(value: float, ctx: DistContext) -> float:
    """Mean of a scalar over ranks."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


# --------------------------------------------------------------------------------------
# Data loaders
# --------------------------------------------------------------------------------------


def worker_init(_: int) -> None:
    """Loader workers: one thread each for OpenCV and torch (the workers are the parallelism)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def progress(iterable: Any, desc: str, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar; when output is not a terminal (logs, CI) it updates every 30 s instead of
    filling the log with carriage returns."""
    interactive = sys.stderr.isatty()
    return tqdm(
        iterable,
        desc=desc,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.1 if interactive else 30.0,
        **kwargs,
    )


def make_loader(
    dataset: Dataset,
    sampler: Sampler,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with workers that never starve the model: persistent, prefetching,
    pinned memory on CUDA. The sampler (data.samplers.EpochSampler) carries the epoch."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=worker_init)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        **kwargs,
    )


# --------------------------------------------------------------------------------------
# Run folders and records
# --------------------------------------------------------------------------------------


class RunFolderExists(RuntimeError):
    """The run folder already holds a run and neither --resume nor --overwrite was given."""


def prepare_run_dir(output_dir: str | Path, experiment_name: str, resume: bool) -> Path:
    """Create OUTPUT_DIR/EXPERIMENT_NAME; never silently reuse a folder that holds a run."""
    run_dir = Path(output_dir) / experiment_name
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise RunFolderExists(
            f"run folder {run_dir} already exists and is not empty; pass --resume to continue "
            "it from latest.pth, or choose another --experiment_name / --output_dir"
        )
    if (
        resume
        and run_dir.is_dir()
        and any(run_dir.iterdir())
        and not (run_dir / "latest.pth").exists()
    ):
        raise RunFolderExists(
            f"--resume: run folder {run_dir} holds files but no latest.pth to continue "
            "from; choose another --experiment_name / --output_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


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


def write_run_record(run_dir: Path, args: Mapping[str, Any], **extra: Any) -> None:
    """args.json: resolved arguments, command line, git commit, library versions."""
    record = {
        "args": dict(args),
        "command": " ".join(sys.argv),
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        **extra,
    }
    (run_dir / "args.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(obj: Any, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    os.replace(tmp, path)


class SummaryCSV:
    """Append one row per epoch to summary.csv (timm's update_summary, in spirit).

    The header is fixed by the first row written; on resume, rows are appended under the
    existing header.
    """

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
            w.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def truncate_summary(path: str | Path, last_epoch: int) -> None:
    """On resume, drop rows of epochs after the checkpoint's (they will be re-run)."""
    path = Path(path)
    if not path.exists():
        return
    with path.open() as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        return
    col = rows[0].index("epoch")
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[col])) <= last_epoch]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(kept)


# --------------------------------------------------------------------------------------
# Mixed precision and numerical safety
# --------------------------------------------------------------------------------------

MIXED_PRECISION_CHOICES = ("fp16", "bf16", "no")


def autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a --mixed_precision setting on a device (None: full precision).

    fp16 autocast is a CUDA feature; on a CPU the run falls back to full precision.
    """
    if mixed_precision not in MIXED_PRECISION_CHOICES:
        raise ValueError(
            f"--mixed_precision must be one of {MIXED_PRECISION_CHOICES}, got {mixed_precision!r}"
        )
    if mixed_precision == "no" or (mixed_precision == "fp16" and device.type != "cuda"):
        return None
    return torch.float16 if mixed_precision == "fp16" else torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A loss scaler for fp16 (disabled, a no-op, otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def clip_and_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    params: Any,
    grad_clip: float,
) -> float:
    """Backward, unscale, clip, step: gradients are clipped in true units (the release
    clipped them while still multiplied by the fp16 loss scale). Returns the grad norm."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = float("nan")
    if grad_clip and grad_clip > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    scaler.step(optimizer)
    scaler.update()
    return norm


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; names the step and the term."""


def check_finite(terms: Mapping[str, torch.Tensor | float], epoch: int, step: int) -> None:
    """Stop with a message naming the step and the loss term when one is not finite."""
    for name, value in terms.items():
        v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(v):
            raise NonFiniteLossError(
                f"loss term {name!r} is {v} at epoch {epoch}, step {step}; stopping. The last "
                "good checkpoint (latest.pth / best.pth) is left intact."
            )


def check_loss_finite(
    loss: torch.Tensor,
    terms: Mapping[str, torch.Tensor | float],
    epoch: int,
    step: int,
    ctx: DistContext,
) -> None:
    """`check_finite` on every rank at once: one host sync per step (`loss.item()`), plus,
    under DDP, one all-reduce of the verdict, so that all ranks stop together instead of
    the others waiting in the next gradient all-reduce until the timeout."""
    finite = math.isfinite(loss.item())
    if ctx.distributed:
        flag = torch.tensor([1.0 if finite else 0.0], device=ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if flag.item() == 0.0 and finite:
            raise NonFiniteLossError(
                f"another process's loss is not finite at epoch {epoch}, step {step} (its "
                "message names the term); stopping. The last good checkpoint is left intact."
            )
    if not finite:
        check_finite({**terms, "loss": loss}, epoch, step)


def capture_rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the global RNG is state too
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():  # the release asked for CUDA RNG state on CPU machines
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore `capture_rng_state`'s states. torch wants them as CPU byte tensors, which a
    checkpoint loaded with map_location=cuda no longer holds: move them back first."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def str2bool(value: str | bool) -> bool:
    """argparse type for true/false flags that bash scripts pass as strings."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("1", "true", "yes", "y", "on"):
        return True
    if v in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"expected true/false, got {value!r}")
