"""EMA teacher f_ema for PL-QW and the teacher-based baselines (docs/METHOD.md §4.4: decay
rises linearly from 0.5 to 0.999 over the first 1000 steps; BatchNorm buffers copied from the
student).

The update is done in place on the teacher's tensors (``mul_`` / ``add_``): an EMA whose
``add`` result is discarded decays the teacher to zero, so the tests check that it moves toward
the student.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare network inside DistributedDataParallel / DataParallel / torch.compile."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


class EMATeacher(nn.Module):
    """Exponential moving average of a student network.

    Args:
        student: the network (may be wrapped in DDP); the teacher is a deep copy of it.
        final_decay: decay after the warm-up (EMA_DECAY, 0.999).
        initial_decay: decay at step 0 (0.5), so the early teacher follows the fast-changing
            student instead of lingering at its random init.
        warmup_steps: steps over which the decay rises linearly (1000).

    The teacher always runs in eval mode: BatchNorm uses the running statistics copied from the
    student, and its outputs do not depend on the batch composition. ``forward`` runs without
    autograd; teacher parameters never require grad.
    """

    def __init__(
        self,
        student: nn.Module,
        final_decay: float = 0.999,
        initial_decay: float = 0.5,
        warmup_steps: int = 1000,
    ) -> None:
        super().__init__()
        if not 0.0 <= initial_decay <= 1.0 or not 0.0 <= final_decay <= 1.0:
            raise ValueError(f"decays must lie in [0, 1]; got {initial_decay}, {final_decay}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0; got {warmup_steps}")
        self.final_decay = float(final_decay)
        self.initial_decay = float(initial_decay)
        self.warmup_steps = int(warmup_steps)
        self.model = copy.deepcopy(unwrap_model(student))
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    def decay(self, step: int) -> float:
        """Decay at optimisation step ``step`` (0-based): linear from initial to final."""
        if self.warmup_steps == 0 or step >= self.warmup_steps:
            return self.final_decay
        frac = max(step, 0) / self.warmup_steps
        return self.initial_decay + (self.final_decay - self.initial_decay) * frac

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> float:
        """t <- d t + (1 - d) s for parameters, buffers copied; returns the decay d used."""
        student = unwrap_model(student)
        d = self.decay(step)
        s_params = dict(student.named_parameters())
        t_params = dict(self.model.named_parameters())
        if s_params.keys() != t_params.keys():
            raise ValueError(
                "EMA teacher and student have different parameters; build the "
                "teacher from this student"
            )
        for name, t in t_params.items():
            t.mul_(d).add_(s_params[name].detach().to(t.dtype), alpha=1.0 - d)
        s_buffers = dict(student.named_buffers())
        for name, t in self.model.named_buffers():
            # BatchNorm running stats and num_batches_tracked follow the student exactly.
            if name in s_buffers and s_buffers[name] is not None:
                t.copy_(s_buffers[name])
        return d

    def train(self, mode: bool = True) -> EMATeacher:
        # The wrapper may follow train()/eval() of a parent module; the teacher stays in eval.
        self.training = mode
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
