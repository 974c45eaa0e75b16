"""One process per device: the same script runs on a CPU, one GPU, or several GPUs and nodes
when launched with ``torchrun --nproc_per_node N training/<script>.py ...`` (DDP; NCCL on
CUDA, gloo on CPU). Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's CUDA device when available, else CPU; or an explicit device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


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


def wrap_ddp(model: nn.Module, ctx: DistContext) -> nn.Module:
    """The model itself in a single process, else wrapped in DistributedDataParallel."""
    if not ctx.distributed:
        return model
    return DistributedDataParallel(
        model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None
    )


def unwrap_ddp(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def gather_by_index(
    local: dict[str, np.ndarray], index_key: str = "index"
) -> dict[str, np.ndarray]:
    """Every rank's per-sample arrays merged and ordered by `local[index_key]`.

    Under torch.distributed each rank holds its shard; a padding sampler repeats a few
    samples, so one copy per index is kept. Every rank returns the same full arrays, without
    the index. A rank with no samples sends an empty dict.
    """
    parts = [local]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local)
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError("gather_by_index: no rank produced any sample")
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # np.unique sorts by index and keeps the first copy of each padded duplicate.
    _, first = np.unique(merged.pop(index_key), return_index=True)
    return {k: v[first] for k, v in merged.items()}
