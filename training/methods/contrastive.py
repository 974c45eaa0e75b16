"""Contrastive baselines CL and CL-QW (docs/METHOD.md §7.5; reference design).

CL = PL-T plus a pixel-level InfoNCE (Oord et al. 2018) on the student's last decoder
feature map, in the spirit of the pixel contrast of Wang et al. 2021 and the confident-pixel
prototypes of U2PL (Wang et al. 2022), reduced to the binary case. The release did not
publish its contrastive baseline; the design below is this project's reference choice:

- Features: `net(x, features=True)` -> the last decoder map (B, C, h, w), L2-normalised per
  pixel, so similarities are cosines and --contrast_temperature sets their sharpness.
- Pixel classes: ground truth on labeled images, the EMA teacher's hard labels on unlabeled
  ones, resized (nearest) to the feature resolution.
- Pixels used: every labeled pixel; unlabeled pixels whose teacher confidence
  max(p_t, 1 - p_t) >= --confidence_threshold (0.9), as for the pseudo-label term.
- Anchors: up to --num_anchors (256) kept pixels per class per step, drawn at random; they
  carry the gradient.
- Positive: the prototype of the anchor's class, the normalised mean feature of all its
  kept pixels (detached). One prototype per class rather than one sampled positive pixel
  gives a low-variance target with two classes, whose pixels are plentiful.
- Negatives: --num_negatives (256) kept pixels of the other class per anchor, drawn with
  replacement (detached, so only anchors move: the two classes are pushed apart through
  the anchors of both).
- Loss: cross-entropy over [s_pos, s_neg_1..K] / temperature with the positive as target,
  averaged over the anchors of both classes; exactly 0 (graph-connected) when either
  class has no kept pixel in the batch (nothing to contrast).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from training.losses import masked_bce
from training.methods.base import Batch, Flag, Logs, StepInfo, register
from training.methods.pseudo_label import PseudoLabel
from training.methods.quality import weight_logs


def pixel_info_nce(
    features: torch.Tensor,
    labels: torch.Tensor,
    keep: torch.Tensor,
    temperature: float = 0.1,
    num_anchors: int = 256,
    num_negatives: int = 256,
) -> tuple[torch.Tensor, Logs]:
    """Binary pixel InfoNCE with class prototypes as positives (see the module docstring).

    Args:
        features: (B, C, h, w) decoder features (any dtype; computed in float32).
        labels: (B, 1, h, w) {0, 1} pixel classes at the feature resolution.
        keep: (B, 1, h, w) {0, 1}: pixels allowed as anchors, prototype members, negatives.
        temperature, num_anchors, num_negatives: as the flags.

    Random draws use torch's global RNG of the features' device (seeded by the loop).
    Returns the loss and logs (number of anchors).
    """
    c = features.shape[1]
    # Channels-last pixels: a view for channels_last inputs (the loop's layout).
    pixels = features.permute(0, 2, 3, 1).reshape(-1, c)
    lab = labels.reshape(-1) > 0.5
    kept = keep.reshape(-1) > 0
    members = [torch.nonzero(kept & ~lab).squeeze(1), torch.nonzero(kept & lab).squeeze(1)]
    if min(len(m) for m in members) == 0:
        # Zero that stays in the graph; one element, as an fp16 sum of the map could overflow.
        return pixels[:1].float().sum() * 0.0, {"contrast_anchors": 0.0}
    device = features.device
    with torch.no_grad():
        unit = F.normalize(pixels.detach().float(), dim=1)
        prototypes = [F.normalize(unit[m].mean(0), dim=0) for m in members]
    losses = []
    for cls_id in (0, 1):
        own, other = members[cls_id], members[1 - cls_id]
        anchor_idx = own[torch.randperm(len(own), device=device)[:num_anchors]]
        with torch.no_grad():
            draw = torch.randint(len(other), (len(anchor_idx), num_negatives), device=device)
            negatives = unit[other[draw]]  # (A, K, C)
        # float32 similarities even under the loop's autocast (which would run them in fp16)
        with torch.autocast(device_type=device.type, enabled=False):
            anchors = F.normalize(pixels[anchor_idx].float(), dim=1)  # (A, C), with gradient
            s_pos = anchors @ prototypes[cls_id]  # (A,)
            s_neg = torch.einsum("ac,akc->ak", anchors, negatives)  # (A, K)
            logits = torch.cat([s_pos[:, None], s_neg], dim=1) / temperature
            target = torch.zeros(len(anchor_idx), dtype=torch.long, device=device)
            losses.append(F.cross_entropy(logits, target, reduction="none"))
    per_anchor = torch.cat(losses)
    return per_anchor.mean(), {"contrast_anchors": float(len(per_anchor))}


@register
class Contrastive(PseudoLabel):
    """CL: L = L_sup + lambda(t) * (L_pl + lambda_c * L_nce).

    L_pl is PL-T's BCE over confident pixels (confidence >= --confidence_threshold 0.9);
    L_nce the pixel InfoNCE of `pixel_info_nce` on the student's last decoder features over
    labeled and unlabeled images (lambda_c = --lambda_contrast 0.1, temperature
    --contrast_temperature 0.1, --num_negatives 256, --num_anchors 256 per class), from the
    student forward of --bn_forward (docs/METHOD.md §4.7).
    The whole unsupervised part shares lambda(t), so the contrast term, which also reads
    the teacher's labels, is off while they are still poor.
    """

    name = "contrastive"
    acronym = "CL"
    row = 110
    script_variables: ClassVar[dict[str, str]] = {
        **PseudoLabel.script_variables,
        "--confidence_threshold": "CONFIDENCE_THRESHOLD_CONTRAST",
    }
    flags = (
        *PseudoLabel.flags,
        Flag("--lambda_contrast", 0.1, "lambda_c, weight of the pixel InfoNCE"),
        Flag("--contrast_temperature", 0.1, "InfoNCE temperature on cosine similarities"),
        Flag("--num_negatives", 256, "negatives per anchor, drawn from the other class"),
        Flag("--num_anchors", 256, "anchors per class and step (reference choice)"),
    )

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        hard, _, keep = self.pseudo_labels(batch.x_u)
        (logits_l, feats_l), (logits_u, feats_u) = self.student_forward(batch, features=True)
        features = torch.cat([feats_l, feats_u])
        loss_sup = self.supervised(logits_l, batch)
        loss_pl, logs = self.pseudo_label_loss(batch, logits_u, hard, keep)

        size = features.shape[-2:]
        labels = F.interpolate(torch.cat([batch.y_l.float(), hard]), size=size, mode="nearest")
        kept = torch.cat([torch.ones_like(batch.y_l, dtype=torch.float32), keep])
        kept = F.interpolate(kept, size=size, mode="nearest")
        loss_nce, nce_logs = pixel_info_nce(
            features,
            labels,
            kept,
            self.args.contrast_temperature,
            self.args.num_anchors,
            self.args.num_negatives,
        )
        loss_u = loss_pl + self.args.lambda_contrast * loss_nce
        terms = {"loss_pl": loss_pl.detach(), "loss_contrast": loss_nce.detach()}
        return self.objective(info, loss_sup, loss_u, {**terms, **logs, **nce_logs})


@register
class ContrastiveQuality(Contrastive):
    """CL-QW: CL with the pseudo-label term weighted per sample by g_phi (Eqns 7-8).

    q_j = g_phi(x_u_j (+) y^_j) on the teacher's hard labels (no gradient),
    w_j = q_j^T 1[q_j >= tau]; each sample's weight is broadcast to its confident pixels
    (m_ji in {0, 1}) and pooled over the batch's pixels as CL pools them:
      L_pl = sum_ji w_j m_ji BCE_ji / sum_ji w_j m_ji  (0 when every weight is 0),
    the Eqn 8 normalisation over pixels, so at equal weights L_pl is CL's exactly and a
    sample without a confident pixel has no say (docs/METHOD.md §7.5). The InfoNCE term
    is CL's, unweighted.
    """

    name = "contrastive_quality"
    acronym = "CL-QW"
    quality_base = "contrastive"
    row = 120
    uses_quality = True

    def pseudo_label_loss(
        self, batch: Batch, logits_u: torch.Tensor, hard: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, Logs]:
        q, w = self.quality_weighting(batch.x_u, hard)
        loss = masked_bce(logits_u, hard, keep * w.view(-1, *([1] * (keep.dim() - 1))))
        return loss, {"kept_pixel_fraction": keep.mean(), **weight_logs(q, w)}
