"""Mixed precision and the optimiser step shared by every training script."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch

MIXED_PRECISION_CHOICES = ("auto", "fp16", "bf16", "no")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX); elsewhere bf16 is
    emulated and slower than float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a --mixed_precision setting on a device (None: full precision).

    auto (the default): fp16 on CUDA, as the paper trained; bf16 on a CPU with native bf16
    (g_phi's training step 2.0x, f_theta's 1.6-2.5x faster than float32 on an AVX-512 BF16
    CPU, with the demo's accuracy unchanged: README, Speed); full precision on other CPUs.
    fp16 autocast is a CUDA feature: on a CPU fp16 falls back to full precision, while bf16
    runs autocast on a CPU too. Losses and g_phi's sigmoid stay in float32 either way.
    """
    if mixed_precision not in MIXED_PRECISION_CHOICES:
        raise ValueError(
            f"--mixed_precision must be one of {MIXED_PRECISION_CHOICES}, got {mixed_precision!r}"
        )
    if mixed_precision == "auto":
        if device.type == "cuda":
            mixed_precision = "fp16"
        else:
            mixed_precision = "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "no"
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
    params: Iterable[torch.Tensor] | Sequence[Iterable[torch.Tensor]],
    grad_clip: float,
) -> float:
    """Backward, unscale, clip, step: gradients are clipped in true units, not while still
    multiplied by the fp16 loss scale (docs/METHOD.md §9). Returns the grad norm (over
    every group, before clipping).

    `params` is one group of parameters or a sequence of groups (`SSLMethod.clip_groups`):
    each group is clipped to `grad_clip` on its own, so that CPS's two networks are each
    clipped as if trained alone. The scaler unscales once, for all groups.
    """
    groups = _clip_groups(params)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = float("nan")
    if grad_clip and grad_clip > 0:
        norms = [torch.nn.utils.clip_grad_norm_(g, grad_clip) for g in groups if g]
        norm = float(torch.stack(norms).float().norm()) if norms else 0.0
    scaler.step(optimizer)
    scaler.update()
    return norm


def _clip_groups(
    params: Iterable[torch.Tensor] | Sequence[Iterable[torch.Tensor]],
) -> list[list[torch.Tensor]]:
    """`params` as a list of groups: a flat iterable of tensors is one group."""
    items = list(params)
    if all(isinstance(p, torch.Tensor) for p in items):
        return [items]
    return [list(g) for g in items]
