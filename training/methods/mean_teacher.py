"""Mean-teacher baselines MT, UA-MT and MT-QW (docs/METHOD.md §7.2; reference choices).

All three pull the student's probabilities on the unlabeled weak view towards those of the
EMA teacher (Tarvainen & Valpola 2017) fed a noisy copy of the same images; they differ in
which pixels or samples count:
- MT: every pixel, MSE (or KL) consistency.
- UA-MT (Yu et al. 2019): pixels where the teacher is certain under input noise.
- MT-QW: every pixel, samples weighted by g_phi on the teacher's hard labels (Eqns 7-8).

The consistency flag and term are shared with ICT (training/methods/ict.py).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
from torch import nn

from training.losses import CONSISTENCY_DISTANCES, consistency_loss
from training.methods.base import Batch, Flag, Logs, SSLMethod, StepInfo, register
from training.methods.quality import weight_logs, weighted_mean

# --consistency_type mse|kl (the release's CONSISTENCY_TYPE, mse).
CONSISTENCY_TYPE = Flag(
    "--consistency_type",
    "mse",
    "distance between student and teacher probabilities",
    choices=tuple(sorted(CONSISTENCY_DISTANCES)),
)


def consistency_term(
    kind: str,
    p_student: torch.Tensor,
    p_teacher: torch.Tensor,
    pixel_weight: torch.Tensor | None = None,
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The consistency loss (`kind` mse or kl): the mean over all (or the kept) pixels, or
    with `sample_weights` w_j the Eqn 8 mean sum_j w_j D_j / sum_j w_j of the per-sample
    losses D_j (the -QW variants; 0 when every w_j is 0)."""
    if sample_weights is None:
        return consistency_loss(kind, p_student, p_teacher, pixel_weight)
    per_sample = consistency_loss(kind, p_student, p_teacher, pixel_weight, per_sample=True)
    return weighted_mean(per_sample, sample_weights)


def add_noise(x: torch.Tensor, std: float, clip: float) -> torch.Tensor:
    """x + clip(N(0, std^2), -clip, clip): MT's teacher input noise, in normalised units."""
    return x + (torch.randn_like(x) * std).clamp(-clip, clip)


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """-(p ln p + (1 - p) ln(1 - p)) in nats; 0 at p in {0, 1}, ln 2 at p = 0.5."""
    p = p.float()
    return -(torch.xlogy(p, p) + torch.xlogy(1.0 - p, 1.0 - p))


def uncertainty_threshold(ramp: float) -> float:
    """Yu et al. 2019: (0.75 + 0.25 ramp(t)) ln 2, from strict to (almost) keep-all."""
    return (0.75 + 0.25 * ramp) * math.log(2.0)


def certain_pixels(mean_probs: torch.Tensor, ramp: float) -> torch.Tensor:
    """Float mask of the pixels whose entropy of the mean teacher probability is below the
    threshold at this point of the ramp."""
    return (binary_entropy(mean_probs) < uncertainty_threshold(ramp)).float()


@register
class MeanTeacher(SSLMethod):
    """MT (Tarvainen & Valpola 2017): L = L_sup + lambda(t) * D(p_s, p_t) over all pixels.

    p_s = sigmoid(f_theta(x_u)); p_t = sigmoid(f_ema(x_u + n)), n = clip(N(0, sigma^2),
    -c, c) with sigma = --teacher_noise_std 0.1, c = --teacher_noise_clip 0.2 (normalised
    image units, as in Yu et al.'s reference code); D = mean squared error of the
    probabilities (--consistency_type mse) or their KL divergence (kl), mean over pixels.
    """

    name = "mean_teacher"
    acronym = "MT"
    row = 40
    uses_teacher = True
    flags = (
        CONSISTENCY_TYPE,
        Flag("--teacher_noise_std", 0.1, "std of the teacher's Gaussian input noise"),
        Flag("--teacher_noise_clip", 0.2, "the noise is clipped to +- this"),
    )

    def teacher_target(
        self, x_u: torch.Tensor, info: StepInfo
    ) -> tuple[torch.Tensor, torch.Tensor | None, Logs]:
        """(teacher probabilities, pixel mask or None, logs) for the consistency term."""
        noisy = add_noise(x_u, self.args.teacher_noise_std, self.args.teacher_noise_clip)
        return self.teacher_probs(noisy), None, {}

    def sample_weights(self, batch: Batch, p_t: torch.Tensor) -> tuple[torch.Tensor | None, Logs]:
        """Per-sample weights of the consistency term (None: unweighted) and their logs."""
        return None, {}

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        p_t, mask, logs = self.teacher_target(batch.x_u, info)
        logits_l, logits_u = self.student_forward(batch)
        loss_sup = self.supervised(logits_l, batch)
        p_s = torch.sigmoid(logits_u.float())
        w, u_logs = self.sample_weights(batch, p_t)
        loss_u = consistency_term(self.args.consistency_type, p_s, p_t, mask, w)
        return self.objective(info, loss_sup, loss_u, {**logs, **u_logs})


@register
class UncertaintyAwareMeanTeacher(MeanTeacher):
    """UA-MT (Yu et al. 2019): MT restricted to pixels the teacher is certain about.

    The teacher sees T = --uamt_passes (8) noisy copies of x_u, n_k = clip(N(0, 0.1^2),
    +-0.2) (--uamt_noise_std, --uamt_noise_clip); u = H(mean_k p_t^k) is the binary
    entropy (nats) of their mean. A pixel counts when u < (0.75 + 0.25 ramp(t)) ln 2, with
    ramp(t) = lambda(t) / lambda_final (the shared schedule's ramp). As in Yu et al.'s code
    the target is one further noisy teacher pass p_t^0, and
      L_u = sum_i m_i (p_s,i - p_t,i^0)^2 / sum_i m_i   (0 when no pixel is kept;
      KL in place of the squared error with --consistency_type kl),
      L = L_sup + lambda(t) L_u.
    The T + 1 passes are separate teacher forwards of the unlabeled batch (as in Yu et
    al.'s code): on a CPU one forward of the (T + 1)-fold batch is 1.8 times slower than
    the passes one by one (benchmarks/ssl_step_time.py), and on a GPU a batch of B_u
    already fills the device.
    """

    name = "ua_mt"
    acronym = "UA-MT"
    row = 50
    flags = (
        CONSISTENCY_TYPE,
        Flag("--uamt_passes", 8, "noisy teacher passes T for the uncertainty estimate"),
        Flag("--uamt_noise_std", 0.1, "std of the Gaussian input noise of each pass"),
        Flag("--uamt_noise_clip", 0.2, "the noise is clipped to +- this"),
    )

    def __init__(
        self, args: argparse.Namespace, networks: list[nn.Module], quality: Any | None = None
    ) -> None:
        if args.uamt_passes < 1:
            raise ValueError(f"--uamt_passes must be >= 1, got {args.uamt_passes}")
        super().__init__(args, networks, quality)

    def teacher_target(
        self, x_u: torch.Tensor, info: StepInfo
    ) -> tuple[torch.Tensor, torch.Tensor | None, Logs]:
        std, clip = self.args.uamt_noise_std, self.args.uamt_noise_clip
        target = self.teacher_probs(add_noise(x_u, std, clip))
        mean_probs = torch.zeros_like(target)
        for _ in range(self.args.uamt_passes):
            mean_probs += self.teacher_probs(add_noise(x_u, std, clip))
        mean_probs /= self.args.uamt_passes
        mask = certain_pixels(mean_probs, info.ramp)
        logs = {
            "kept_pixel_fraction": mask.mean(),
            "uncertainty_threshold": uncertainty_threshold(info.ramp),
        }
        return target, mask, logs


@register
class MeanTeacherQuality(MeanTeacher):
    """MT-QW: MT with the consistency of sample j weighted by g_phi (Eqns 7-8).

    y^_j = 1[p_t,j > 0.5] are the hard labels of the (noisy-input) teacher target itself, so
    g_phi judges the very prediction the student is pulled towards; q_j = g_phi(x_u_j (+)
    y^_j) without gradient; w_j = q_j^T 1[q_j >= tau] (tau 0.5, T 2);
      L_u = sum_j w_j D_j / sum_j w_j  (0 when every w_j is 0),
    D_j the per-sample MSE (or KL) of sample j;  L = L_sup + lambda(t) L_u.
    """

    name = "mean_teacher_quality"
    acronym = "MT-QW"
    quality_base = "mean_teacher"
    row = 60
    uses_quality = True

    def sample_weights(self, batch: Batch, p_t: torch.Tensor) -> tuple[torch.Tensor | None, Logs]:
        q, w = self.quality_weighting(batch.x_u, (p_t > 0.5).float())
        return w, weight_logs(q, w)
