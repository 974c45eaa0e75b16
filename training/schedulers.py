"""Schedules of Phase 2 (docs/METHOD.md §4.2-§4.3): the unsupervised weight lambda(t) and the
learning rate. (The EMA teacher's decay schedule is models.ema.EMATeacher.decay.)"""

from __future__ import annotations

import math

import torch

RAMP_SHAPES = ("linear", "sigmoid")


class LambdaSchedule:
    """lambda(t): `initial` during the first `warmup` epochs, then a ramp to `final` over
    `rampup` epochs, then `final`. t may be fractional (epoch + step / steps_per_epoch), so
    the weight rises smoothly within an epoch.

    shape "linear" (the paper) or "sigmoid": exp(-5 (1 - r)^2) with r the linear progress,
    the ramp of Laine & Aila (2017) and Tarvainen & Valpola (2017); it starts at
    exp(-5) ~ 0.0067 of the way, not at 0, as in their code.

    Defaults (initial, final, warmup, rampup), §4.3: QAR (0, 0.01, 30, 40); PL-QW and
    every baseline (0, 0.25, 15, 30).
    """

    def __init__(
        self, initial: float, final: float, warmup: float, rampup: float, shape: str = "linear"
    ) -> None:
        if shape not in RAMP_SHAPES:
            raise ValueError(f"lambda ramp shape must be one of {RAMP_SHAPES}, got {shape!r}")
        if warmup < 0 or rampup < 0:
            raise ValueError(f"lambda warmup and rampup must be >= 0, got {warmup}, {rampup}")
        self.initial, self.final = float(initial), float(final)
        self.warmup, self.rampup, self.shape = float(warmup), float(rampup), shape

    def progress(self, epoch: float) -> float:
        """Position in the ramp, in [0, 1]: 0 during the warm-up, 1 once the ramp is done
        (UA-MT's uncertainty threshold follows it too)."""
        if epoch < self.warmup:
            return 0.0
        if self.rampup == 0:
            return 1.0
        r = min(1.0, (epoch - self.warmup) / self.rampup)
        return r if self.shape == "linear" else math.exp(-5.0 * (1.0 - r) ** 2)

    def __call__(self, epoch: float) -> float:
        return self.initial + (self.final - self.initial) * self.progress(epoch)

    def __repr__(self) -> str:
        return (
            f"LambdaSchedule(initial={self.initial}, final={self.final}, "
            f"warmup={self.warmup}, rampup={self.rampup}, shape={self.shape!r})"
        )


def cosine_lr_scheduler(
    optimizer: torch.optim.Optimizer, epochs: int, eta_min: float = 1e-6
) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine annealing from the optimiser's lr to `eta_min` over `epochs` (§4.2: AdamW
    1e-4 -> 1e-6 over the run).

    Call `scheduler.step()` once AFTER each epoch, without an argument: epoch 0 runs at the
    base rate and epoch 1 already lower (`step(epoch)` would keep epochs 0 and 1 at the
    peak, §9).
    """
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(epochs), eta_min=eta_min)
