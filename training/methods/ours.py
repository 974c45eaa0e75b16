"""The paper's methods: QAR and PL-QW (docs/METHOD.md §5-§6, Eqns 5-8)."""

from __future__ import annotations

import torch

from training.losses import dice_ce_per_sample, qar_loss
from training.methods.base import QAR_LAMBDA, Batch, Logs, SSLMethod, StepInfo, register
from training.methods.quality import quality_weights, weighted_mean


@register
class QualityAwareRegularisation(SSLMethod):
    """QAR (Eqns 5-6): L = L_sup + lambda_qar * (1 - mean_j g_phi(x_u_j (+) p_u_j)).

    p_u = sigmoid(f_theta(x_u)) is g_phi's mask channel, so the gradient of the quality
    term reaches f_theta through the frozen g_phi: the student is pushed towards masks
    that g_phi judges good for their image.
    """

    name = "ours_qar"
    acronym = "QAR"
    quality_base = "supervised"
    row = 130
    uses_quality = True
    lambda_defaults = QAR_LAMBDA
    lambda_variables = "QAR"
    # Like every method that reads g_phi, QAR takes --quality_threshold and
    # --quality_temperature (the release's script passes them); it neither thresholds
    # nor weights.

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        logits_l, logits_u = self.student_forward(batch)
        loss_sup = self.supervised(logits_l, batch)
        q = self.quality(batch.x_u, torch.sigmoid(logits_u.float()), grad=True)
        loss_qar = qar_loss(q)
        loss = loss_sup + info.lam * loss_qar
        return loss, {
            "loss_sup": loss_sup.detach(),
            "loss_qar": loss_qar.detach(),
            "mean_quality": q.detach().mean(),
        }


@register
class QualityWeightedPseudoLabels(SSLMethod):
    """PL-QW (Eqns 7-8): EMA-teacher hard labels weighted per sample by g_phi.

    y^_j = 1[sigmoid(f_ema(x_u_j)) > 0.5] on the weak view (teacher and student see the
    same view); q_j = g_phi(x_u_j (+) y^_j) without gradient; w_j = q_j^T 1[q_j >= tau];
    L_qw = sum_j w_j l_j / sum_j w_j with l_j the per-sample DiceCE of the student against
    y^_j; L = L_sup + lambda_qw L_qw.
    """

    name = "ours_pl_qw"
    acronym = "PL-QW"
    quality_base = "pseudo_label_sample_reweighting"  # PL-C: confidence for q
    row = 140
    uses_quality = True
    uses_teacher = True

    # Which sample score weights the pseudo-labels (PL-C overrides these three).
    score_name = "mean_quality"

    def sample_scores(self, batch: Batch, probs: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        """q_j = g_phi(x_u_j (+) y^_j), no gradient (Eqn 7's input)."""
        return self.quality(batch.x_u, hard)

    def weight_settings(self) -> tuple[float, float]:
        """(tau, T) of Eqn 7."""
        return self.args.quality_threshold, self.args.quality_temperature

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        probs = self.teacher_probs(batch.x_u)
        hard = (probs > 0.5).float()
        q = self.sample_scores(batch, probs, hard)
        w = quality_weights(q, *self.weight_settings())
        logits_l, logits_u = self.student_forward(batch)
        loss_sup = self.supervised(logits_l, batch)
        loss_qw = weighted_mean(dice_ce_per_sample(logits_u, hard), w)
        logs = {self.score_name: q.detach().float().mean(), "kept_fraction": (w > 0).float().mean()}
        return self.objective(info, loss_sup, loss_qw, logs)
