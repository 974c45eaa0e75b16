"""Pseudo-label baselines PL-T and PL-C (docs/METHOD.md §7.1; reference choices).

Both take the EMA teacher's hard labels y^ = 1[p_t > 0.5] on the unlabeled weak view, which
the student sees too (as in PL-QW). They differ in what filters the labels:
- PL-T (`pseudo_label`) keeps confident *pixels*: max(p_t, 1 - p_t) >= 0.9 (Lee 2013's
  pseudo-labels with a FixMatch-style confidence threshold, Sohn et al. 2020).
- PL-C (`pseudo_label_sample_reweighting`) weights whole *samples* by their mean pixel
  confidence, with the same formula as PL-QW's quality weights (Eqn 7): the baseline that
  isolates what g_phi adds over the network's own confidence.

The helpers here (confidence flag, teacher pseudo-labels) are shared by the contrastive
baselines.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from training.losses import masked_bce
from training.methods.base import Batch, Flag, Logs, SSLMethod, StepInfo, register
from training.methods.ours import QualityWeightedPseudoLabels

# --confidence_threshold (the release's CONFIDENCE_THRESHOLD_PSEUDO*, 0.9).
CONFIDENCE_THRESHOLD = Flag(
    "--confidence_threshold",
    0.9,
    "pixel confidence max(p, 1-p) a pseudo-label needs to count (PL-T, CL) or "
    "mean confidence a sample needs to be kept (PL-C)",
)


def teacher_pseudo_labels(
    probs: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard labels 1[p > 0.5], pixel confidence max(p, 1 - p) and the mask confidence >= thr.

    All three are float tensors shaped like `probs` and carry no gradient.
    """
    probs = probs.detach().float()
    hard = (probs > 0.5).float()
    confidence = torch.maximum(probs, 1.0 - probs)
    keep = (confidence >= threshold).float()
    return hard, confidence, keep


@register
class PseudoLabel(SSLMethod):
    """PL-T: L = L_sup + lambda(t) * BCE(f_theta(x_u), y^) over confident pixels only.

    y^ = 1[p_t > 0.5] with p_t = sigmoid(f_ema(x_u)); a pixel counts when its teacher
    confidence max(p_t, 1 - p_t) >= --confidence_threshold (0.9). The BCE is the mean over
    every kept pixel of the batch (`masked_bce`), 0 when none is kept. Pseudo-labelling
    after Lee (2013), with the confidence threshold of FixMatch (Sohn et al. 2020) and an
    EMA teacher as the label source (Tarvainen & Valpola 2017), docs/METHOD.md §7.1.
    """

    name = "pseudo_label"
    acronym = "PL-T"
    row = 20
    uses_teacher = True
    flags = (CONFIDENCE_THRESHOLD,)

    def pseudo_labels(self, x_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The teacher's (hard labels, pixel confidence, kept-pixel mask) on x_u."""
        return teacher_pseudo_labels(self.teacher_probs(x_u), self.args.confidence_threshold)

    def pseudo_label_loss(
        self, batch: Batch, logits_u: torch.Tensor, hard: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, Logs]:
        """BCE over the kept pixels of the batch, and its logs (CL-QW weights it)."""
        return masked_bce(logits_u, hard, keep), {"kept_pixel_fraction": keep.mean()}

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        hard, _, keep = self.pseudo_labels(batch.x_u)
        logits_l, logits_u = self.student_forward(batch)
        loss_sup = self.supervised(logits_l, batch)
        loss_pl, logs = self.pseudo_label_loss(batch, logits_u, hard, keep)
        return self.objective(info, loss_sup, loss_pl, logs)


@register
class PseudoLabelSampleReweighting(QualityWeightedPseudoLabels):
    """PL-C: PL-QW with the network's own confidence in place of g_phi's quality.

    c_j = mean over pixels of max(p_t, 1 - p_t) (teacher on x_u_j);
    w_j = c_j^T 1[c_j >= tau_c] (T = --confidence_temperature 2, tau_c =
    --confidence_threshold 0.9; the same formula as Eqn 7, `quality_weights`);
    L_u = sum_j w_j l_j / sum_j w_j (Eqn 8, 0 when every w_j is 0) with l_j the per-sample
    DiceCE of the student against y^_j = 1[p_t > 0.5];  L = L_sup + lambda(t) L_u.
    Only the sample score differs from PL-QW, so PL-C reuses its step.
    """

    name = "pseudo_label_sample_reweighting"
    acronym = "PL-C"
    quality_base = None  # a baseline, though it reuses PL-QW's step
    row = 30
    script_variables: ClassVar[dict[str, str]] = {
        **SSLMethod.script_variables,
        "--confidence_threshold": "CONFIDENCE_THRESHOLD_PSEUDO_SR",
    }
    uses_quality = False
    flags = (
        CONFIDENCE_THRESHOLD,
        Flag(
            "--confidence_temperature",
            2.0,
            "T in w = c^T 1[c >= threshold] (the release's CONFIDENCE_TEMPERATURE_PSEUDO_SR)",
        ),
    )
    score_name = "mean_confidence"

    def sample_scores(self, batch: Batch, probs: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        """c_j: the teacher's mean pixel confidence max(p, 1 - p)."""
        return torch.maximum(probs, 1.0 - probs).flatten(1).mean(1)

    def weight_settings(self) -> tuple[float, float]:
        return self.args.confidence_threshold, self.args.confidence_temperature
