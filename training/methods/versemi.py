"""VerSemi in 2D and its quality-guided variants (docs/METHOD.md §11; Zeng et al., IEEE TMI
2025), and the pooled baseline: multi-task methods, trained over a task table.

Tasks 0..K-1 are the table's data sets and task K the synthetic "any foreground" task.
Stage 1 (every step): training.versemi_losses.stage1_loss on the task-balanced labeled
batch. Stage 2 adds the unlabeled terms (stage2_terms) with weight lambda(t): the loop's
lambda schedule is the stage switch, 0 until `--lambda_warmup` epochs (the end of stage 1)
and 1 after (no ramp), so that stage 2's loss acts only in stage 2 and early stopping
counts its patience from stage 2 on (§4.6).

- VerSemi-QW: the aggregated term weighted per unlabeled image by Eqns 7-8, w = q^T
  1[q >= tau], q = g_phi(x_u, 1[y^(x_u) > 0.5]) on the unlabeled image itself and its
  aggregated pseudo-label (g_phi never saw pasted images).
- VerSemi+QAR: VerSemi plus lambda_qar (1 - g_phi(x_u, p_t(x_u))) on each unlabeled image's
  own prompted soft prediction, in stage 2.
- Pooled (SUP, all tasks pooled, no prompts): one network, DiceCE on the task-balanced
  labeled batches, tested as it is on every task.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from data.multitask import SquareBox, different_task_partner
from training.losses import dice_ce_loss, qar_loss
from training.methods.base import (
    SCRIPT_VARIABLES,
    Batch,
    Flag,
    Logs,
    SSLMethod,
    StepInfo,
    register,
)
from training.methods.quality import quality_weights, weight_logs
from training.versemi_losses import aggregated_target, stage1_loss, stage2_terms

# The stage switch as a lambda schedule: 0 in stage 1, 1 in stage 2 (epochs; the driver
# sets the warm-up to half of --epochs, VerSemi's equal stages).
STAGE_LAMBDA = (0.0, 1.0, 100.0, 0.0)
STAGE1_BOX = 2 / 3  # r of stage 1's cross-task CutMix (VerSemi's code)
STAGE2_BOX = (0.3, 0.6)  # r ~ U(0.3, 0.6) in stage 2
# VerSemi's paper compares with each task trained alone, supervised and semi-supervised.
PER_TASK_BASELINES = ("supervised", "mean_teacher")


class MultiTaskMethod(SSLMethod):
    """A method over a task table: `batch.t_l` / `batch.t_u` carry each image's task."""

    multitask = True
    needs_unlabeled = False
    lambda_defaults = STAGE_LAMBDA
    # LAMBDA_WARMUP_VERSEMI (train_versemi.sh's STAGE2_EPOCH) is the stage switch
    lambda_variables = "VERSEMI"
    script_variables: ClassVar[dict[str, str]] = {
        **SCRIPT_VARIABLES,
        "--lambda_qar": "LAMBDA_QAR_VERSEMI",
    }
    bn_forward_choices = ("mixed",)  # no concatenated forward to choose for: one mode
    adam_betas = (0.5, 0.999)  # VerSemi's Adam (lr 1e-3: the driver's LR)

    def __init__(self, args: argparse.Namespace, networks: list[nn.Module], quality=None):
        super().__init__(args, networks, quality)
        self.num_datasets = int(args.num_datasets)


@register
class Pooled(MultiTaskMethod):
    """All tasks' labeled images pooled into one data set, no prompts (VerSemi's paper's
    "joint training" comparison): DiceCE on every task-balanced batch."""

    name = "pooled_supervised"
    acronym = "Pooled"
    row = 300

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        loss = dice_ce_loss(self.student(batch.x_l), batch.y_l)
        return loss, {"loss_sup": loss.detach()}


@register
class VerSemi(MultiTaskMethod):
    """VerSemi (§11): stage 1 always, stage 2's unlabeled terms weighted by lambda(t)."""

    name = "versemi"
    acronym = "VerSemi"
    row = 310
    prompted = True
    needs_unlabeled = True

    def boxes(self, n: int, size: int, r, step: int, stream: int, device) -> torch.Tensor:
        """(n, 1, size, size) square CutMix boxes, drawn from (seed, step, stream): a
        resumed run redraws the boxes of the run that was never interrupted."""
        rng = np.random.default_rng((self.args.seed & 0xFFFFFFFF, step, stream))
        box = np.stack([SquareBox(r)(rng, size) for _ in range(n)])[:, None]
        return torch.from_numpy(box).to(device=device, dtype=torch.float32)

    def stage2_weights(self, batch: Batch, logs: Logs) -> torch.Tensor | None:
        """Per-unlabeled-image weights of the aggregated term (None: the plain mean)."""
        return None

    def stage2_extra(self, batch: Batch, info: StepInfo, logs: Logs) -> torch.Tensor | None:
        """A further stage-2 term (VerSemi+QAR), already weighted; None: none."""
        return None

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        if batch.t_l is None:
            raise ValueError(f"{self.name} trains over a task table: the batch has no tasks")
        x, size, device = batch.x_l, batch.x_l.shape[-1], batch.x_l.device
        partner = different_task_partner(batch.t_l).to(device)
        box = self.boxes(len(x), size, STAGE1_BOX, info.step, 0, device)
        loss, logs = stage1_loss(self.student, x, batch.y_l, batch.t_l, box, partner,
                                 synthetic=self.num_datasets)  # fmt: skip
        logs = dict(logs)
        zero = torch.zeros((), device=device)
        if info.lam > 0 and batch.x_u is not None:  # stage 2
            pair = torch.arange(len(batch.x_u), device=device) % len(x)
            box_u = self.boxes(len(batch.x_u), size, STAGE2_BOX, info.step, 1, device)
            weights = self.stage2_weights(batch, logs)
            unsup, terms, _ = stage2_terms(self.student, batch.x_u, x[pair], batch.y_l[pair],
                                           box_u, self.num_datasets, weights)  # fmt: skip
            extra = self.stage2_extra(batch, info, logs)
            loss = loss + info.lam * unsup + (extra if extra is not None else 0.0)
            logs.update(terms)
        else:
            logs.update(loss_agg=zero, loss_region=zero)
            self.stage1_logs(logs)
        return loss, logs

    def stage1_logs(self, logs: Logs) -> None:
        """The stage-2 columns a variant logs, as NaN (not computed) in stage 1, so that
        summary.csv has them from its first row."""


class _QualityLogs:
    """NaN quality columns in stage 1 (summary.csv's header is fixed by its first row)."""

    quality_columns: ClassVar[tuple[str, ...]] = ()

    def stage1_logs(self, logs: Logs) -> None:
        logs.update({k: float("nan") for k in self.quality_columns})


@register
class VerSemiQW(_QualityLogs, VerSemi):
    """VerSemi-QW: the aggregated term weighted per unlabeled image by Eqns 7-8, from
    g_phi on the image and its aggregated pseudo-label 1[max_k p_k(x_u) > 0.5]."""

    name = "versemi_quality"
    acronym = "VerSemi-QW"
    row = 320
    uses_quality = True
    quality_base = "versemi"
    quality_columns = ("mean_quality", "kept_fraction")

    def stage2_weights(self, batch: Batch, logs: Logs) -> torch.Tensor:
        target = aggregated_target(self.student, batch.x_u, self.num_datasets)
        hard = (target > 0.5).float()
        q = self.quality(batch.x_u, hard, batch.t_u)
        w = quality_weights(q, self.args.quality_threshold, self.args.quality_temperature)
        logs.update(weight_logs(q, w))
        return w


@register
class VerSemiQAR(_QualityLogs, VerSemi):
    """VerSemi+QAR: VerSemi plus lambda_qar (1 - g_phi(x_u (+) p_t(x_u))) in stage 2, p_t
    the unlabeled image's own prompted soft prediction (Eqns 5-6)."""

    name = "versemi_qar"
    acronym = "VerSemi+QAR"
    row = 330
    uses_quality = True
    quality_base = "versemi"
    quality_columns = ("loss_qar", "mean_quality")
    flags = (Flag("--lambda_qar", 0.01, "weight of the QAR term in stage 2 (Eqn 5)"),)

    def stage2_extra(self, batch: Batch, info: StepInfo, logs: Logs) -> torch.Tensor:
        if batch.t_u is None:
            raise ValueError(f"{self.name} needs each unlabeled image's task (batch.t_u)")
        probs = torch.sigmoid(self.student(batch.x_u, batch.t_u).float())
        q = self.quality(batch.x_u, probs, batch.t_u, grad=True)
        loss_qar = qar_loss(q)
        logs.update(loss_qar=loss_qar.detach(), mean_quality=q.detach().mean())
        return info.lam * self.args.lambda_qar * loss_qar


class TaskQuality:
    """g_phi for a multi-task run: one frozen predictor for every task, or one per task
    (the task table's `mq_checkpoint` column); `(x, masks, tasks, grad)` -> q (B,)."""

    def __init__(self, scorers: list[Any]) -> None:
        self.scorers = scorers
        self.model = scorers[0].model  # the two-step tests' snapshot reads it

    def __call__(
        self, x: torch.Tensor, masks: torch.Tensor, tasks: torch.Tensor | None, grad: bool = False
    ) -> torch.Tensor:
        if len(self.scorers) == 1 or tasks is None:
            return self.scorers[0](x, masks, grad=grad)
        q = torch.empty(len(x), device=x.device)
        for k in tasks.unique().tolist():
            sel = tasks == k
            q = q.index_put((sel.nonzero()[:, 0],), self.scorers[k](x[sel], masks[sel], grad=grad))
        return q

    def parameters_snapshot(self) -> list[torch.Tensor]:
        return [p for s in self.scorers for p in s.parameters_snapshot()]
