"""Weak-to-strong consistency: FixMatch and UniMatch, and their quality-guided variants
(docs/METHOD.md §7.6).

The model labels each unlabeled image's weak view itself (no EMA teacher): hard labels
1[p > 0.5] where the pixel confidence max(p, 1 - p) >= 0.95, the rest ignored. The student
learns them on strong views (`data.augment.StrongAugment`) into which a CutMix box of
another unlabeled image of the batch is pasted, with that image's labels and confidence
pasted into the targets in the same box (`cutmix`). The loss is UniMatch's Dice on
confident pixels (`training.losses.masked_dice_loss`), and the objective its medical
code's:
- FixMatch (Sohn et al. 2020):  L = (L_sup + lambda L_s) / 2;
- UniMatch (Yang et al. 2023):  L = (L_sup + lambda (0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp)) / 2,
  with L_fp the weak view's loss through Dropout2d(0.5) on the encoder features
  (`FeatureNet(perturb=...)`, one forward with the clean weak view);
lambda = 1 throughout by default (the papers'), the project's schedule by flag.

Quality-guided variants, one step on top of their base: -QW weights each pixel's term by
w_j = q_j^T 1[q_j >= tau] of the image j its label came from (Eqn 7; q from g_phi on the
weak-view pseudo-label), normalised to mean 1 over the batch (Eqn 8's normalisation for a
batch-pooled Dice: at equal weights the base method exactly); UniMatch+QAR adds
lambda_qar(t) L_qar (Eqn 6) on the weak view's soft prediction.

The CutMix partner of image j is image j + 1 of the batch (cyclically): its weak-view labels
are already computed, so no second loader or forward is needed (UniMatch draws partners
from a second loader; a documented reference choice).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from training.losses import masked_dice_loss, qar_loss
from training.methods.base import QAR_LAMBDA, Batch, Flag, Logs, SSLMethod, StepInfo, register
from training.methods.pseudo_label import teacher_pseudo_labels
from training.methods.quality import weight_logs

WEAK_STRONG_LAMBDA = (1.0, 1.0, 0.0, 0.0)  # lambda = 1 from the first step
CONFIDENCE_THRESHOLD = Flag(
    "--confidence_threshold",
    0.95,
    "pixel confidence max(p, 1-p) a weak-view pseudo-label needs (FixMatch's and UniMatch's 0.95)",
)
FP_DROPOUT = Flag(
    "--fp_dropout", 0.5, "Dropout2d rate on the encoder features of UniMatch's perturbed stream"
)
# UniMatch's weights of its two strong views and its feature-perturbed stream.
UNIMATCH_WEIGHTS = (0.25, 0.25, 0.5)


def partner_index(n: int, device: torch.device) -> torch.Tensor:
    """CutMix partner of each image of a batch of n: the next one, cyclically."""
    return torch.roll(torch.arange(n, device=device), -1)


def cutmix(x: torch.Tensor, box: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """x with partner[j]'s values pasted into sample j where box_j is 1: images, labels,
    confidence and weight maps alike, so targets move with the pixels they label."""
    return torch.where(box.bool(), x[partner], x)


@register
class FixMatch(SSLMethod):
    """FixMatch: the weak view labels itself, the CutMixed strong view learns it."""

    name = "fixmatch"
    acronym = "FixMatch"
    row = 122
    strong_views = 1
    flags = (CONFIDENCE_THRESHOLD,)
    lambda_defaults = WEAK_STRONG_LAMBDA
    lambda_variables = "WS"
    script_variables: ClassVar[dict[str, str]] = {
        **SSLMethod.script_variables,
        "--confidence_threshold": "CONFIDENCE_THRESHOLD_WS",
        "--fp_dropout": "FP_DROPOUT",
    }

    def weak_forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(logits_l, logits of the weak view, logits of its perturbed stream or None)."""
        logits_l, logits_w = self.student_forward(batch)
        return logits_l, logits_w, None

    def pixel_weights(
        self, batch: Batch, hard: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, Logs]:
        """Each weak-view pixel's weight in the unlabeled loss: its confidence mask."""
        return keep, {}

    def strong_loss(
        self, batch: Batch, view: int, hard: torch.Tensor, weight: torch.Tensor, partner
    ) -> torch.Tensor:
        """Dice on confident pixels of strong view `view`, CutMix applied to the image,
        its pseudo-label and its pixel weights alike."""
        box = batch.boxes[view]
        logits_s = self.unlabeled_forward(cutmix(batch.x_s[view], box, partner))
        target, w = cutmix(hard, box, partner), cutmix(weight, box, partner)
        return masked_dice_loss(torch.sigmoid(logits_s.float()), target, w)

    def unlabeled_terms(
        self, batch: Batch, logits_fp: torch.Tensor | None, hard, weight, partner
    ) -> torch.Tensor:
        """FixMatch: L_s on its one strong view."""
        return self.strong_loss(batch, 0, hard, weight, partner)

    def unlabeled_lambda(self, info: StepInfo) -> float:
        """The weight of the unlabeled terms: lambda(t)."""
        return info.lam

    def extra_terms(
        self, batch: Batch, info: StepInfo, logits_w: torch.Tensor
    ) -> tuple[torch.Tensor | float, Logs]:
        """A term added to the objective and its logs (UniMatch+QAR's); none here."""
        return 0.0, {}

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        if len(batch.x_s) < self.strong_views:
            raise ValueError(
                f"{self.name} needs {self.strong_views} strong view(s) of x_u, the batch has "
                f"{len(batch.x_s)}"
            )
        logits_l, logits_w, logits_fp = self.weak_forward(batch)
        hard, _, keep = teacher_pseudo_labels(
            torch.sigmoid(logits_w.detach().float()), self.args.confidence_threshold
        )
        weight, logs = self.pixel_weights(batch, hard, keep)
        partner = partner_index(len(hard), hard.device)
        loss_u = self.unlabeled_terms(batch, logits_fp, hard, weight, partner)
        loss_sup = self.supervised(logits_l, batch)
        extra, extra_logs = self.extra_terms(batch, info, logits_w)
        loss = (loss_sup + self.unlabeled_lambda(info) * loss_u) / 2.0 + extra
        return loss, {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_u.detach(),
            "kept_pixel_fraction": keep.mean(),
            **logs,
            **extra_logs,
        }


class QualityWeightedTargets:
    """The -QW piece of FixMatch-QW and UniMatch-QW: each pixel's weight is its confidence
    mask times w_j / mean(w), w_j = q_j^T 1[q_j >= tau] (Eqn 7) of the weak-view
    pseudo-label of the image j it labels (normalised to mean 1 over the batch: Eqn 8's
    normalisation for a batch-pooled loss; all zero when every w_j is 0)."""

    uses_quality = True

    def pixel_weights(self, batch: Batch, hard: torch.Tensor, keep: torch.Tensor):
        q, w = self.quality_weighting(batch.x_u, hard)
        mean = w.mean()
        w_norm = w / torch.where(mean > 0, mean, torch.ones_like(mean))
        return keep * w_norm.view(-1, 1, 1, 1), weight_logs(q, w)


@register
class FixMatchQuality(QualityWeightedTargets, FixMatch):
    """FixMatch-QW: FixMatch with g_phi's per-sample weights on its pseudo-labels."""

    name = "fixmatch_quality"
    acronym = "FixMatch-QW"
    quality_base = "fixmatch"
    row = 123


@register
class UniMatch(FixMatch):
    """UniMatch: two CutMixed strong views and the feature-perturbed weak stream."""

    name = "unimatch"
    acronym = "UniMatch"
    row = 125
    strong_views = 2
    flags = (CONFIDENCE_THRESHOLD, FP_DROPOUT)

    def weak_forward(self, batch: Batch):
        logits_l, (logits_w, logits_fp) = self.student_forward(batch, perturb=self.args.fp_dropout)
        return logits_l, logits_w, logits_fp

    def unlabeled_terms(self, batch, logits_fp, hard, weight, partner) -> torch.Tensor:
        """0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp (the perturbed stream has no CutMix)."""
        a, b, c = UNIMATCH_WEIGHTS
        loss_s1 = self.strong_loss(batch, 0, hard, weight, partner)
        loss_s2 = self.strong_loss(batch, 1, hard, weight, partner)
        loss_fp = masked_dice_loss(torch.sigmoid(logits_fp.float()), hard, weight)
        return a * loss_s1 + b * loss_s2 + c * loss_fp


@register
class UniMatchQuality(QualityWeightedTargets, UniMatch):
    """UniMatch-QW: UniMatch with g_phi's per-sample weights on its pseudo-labels."""

    name = "unimatch_quality"
    acronym = "UniMatch-QW"
    quality_base = "unimatch"
    row = 126


@register
class UniMatchQAR(UniMatch):
    """UniMatch+QAR: UniMatch's loss, its terms at weight 1, + lambda_qar(t) L_qar (Eqn 6)
    on the weak view's soft prediction (through g_phi), on QAR's schedule."""

    name = "unimatch_qar"
    acronym = "UniMatch+QAR"
    quality_base = "unimatch"
    row = 127
    uses_quality = True
    lambda_defaults = QAR_LAMBDA
    lambda_variables = "QAR"

    def unlabeled_lambda(self, info: StepInfo) -> float:
        return 1.0  # lambda(t) is QAR's here

    def extra_terms(self, batch, info, logits_w):
        q = self.quality(batch.x_u, torch.sigmoid(logits_w.float()), grad=True)
        loss_qar = qar_loss(q)
        return info.lam * loss_qar, {
            "loss_qar": loss_qar.detach(),
            "mean_quality": q.detach().mean(),
        }
