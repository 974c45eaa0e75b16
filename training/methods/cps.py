"""Cross pseudo supervision baselines CPS and CPS-QW (docs/METHOD.md §7.4).

CPS (Chen et al. 2021): two networks of the same architecture, initialised with different
seeds (the loop builds network k with seed + 1000 k), each learn from the other's hard
labels on unlabeled images. One optimiser updates both, each network's gradient clipped on
its own (`clip_groups`); there is no EMA teacher.
"""

from __future__ import annotations

import torch
from torch import nn

from training.losses import bce_per_sample
from training.methods.base import Batch, Logs, SSLMethod, StepInfo, register
from training.methods.quality import weight_logs, weighted_mean


@register
class CrossPseudoSupervision(SSLMethod):
    """CPS (Chen et al. 2021):
      L = L_sup(A) + L_sup(B) + lambda(t) * [BCE(f_A(x_u), y^_B) + BCE(f_B(x_u), y^_A)],
    y^_k = 1[sigmoid(f_k(x_u)) > 0.5], detached; BCE is the mean over all pixels and images
    (Chen et al. use every pixel, without a confidence threshold). The cross term is on
    unlabeled images only (docs/METHOD.md §7.4); L_sup is DiceCE (Eqn 4).

    Network A (`networks[0]`, the base class's student and `eval_model`) is validated,
    selected and tested: it is built with the run's seed, like every single-network
    method's student, so CPS is compared at equal init and inference cost (Chen et al. also
    infer with one branch; averaging both would be a two-model ensemble).
    """

    name = "cps"
    acronym = "CPS"
    row = 90
    num_networks = 2

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """One clipping group per network (docs/METHOD.md §7.4): each is clipped as if it
        trained alone, so one network's large gradients never shrink the other's step."""
        return [[p for p in net.parameters() if p.requires_grad] for net in self.networks]

    def cross_terms(
        self, batch: Batch, logits_a: torch.Tensor, logits_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, Logs]:
        """(loss of A learning from B's labels, loss of B learning from A's, logs)."""
        hard_a = (logits_a.detach() > 0).float()  # sigmoid > 0.5 <=> logit > 0
        hard_b = (logits_b.detach() > 0).float()
        return bce_per_sample(logits_a, hard_b).mean(), bce_per_sample(logits_b, hard_a).mean(), {}

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        net_a, net_b = self.networks
        logits_l_a, logits_u_a = self.student_forward(batch, net=net_a)
        logits_l_b, logits_u_b = self.student_forward(batch, net=net_b)
        loss_sup_a = self.supervised(logits_l_a, batch)
        loss_sup_b = self.supervised(logits_l_b, batch)
        loss_a, loss_b, logs = self.cross_terms(batch, logits_u_a, logits_u_b)
        loss_sup = loss_sup_a + loss_sup_b
        loss_cps = loss_a + loss_b
        loss = loss_sup + info.lam * loss_cps
        return loss, {
            "loss_sup": loss_sup.detach(),
            "loss_sup_a": loss_sup_a.detach(),
            "loss_sup_b": loss_sup_b.detach(),
            "loss_unsup": loss_cps.detach(),
            # How far the two networks' hard labels disagree: CPS's learning signal.
            "disagreement": ((logits_u_a.detach() > 0) != (logits_u_b.detach() > 0)).float().mean(),
            **logs,
        }


@register
class CrossPseudoSupervisionQuality(CrossPseudoSupervision):
    """CPS-QW: each CPS direction weighted per sample by g_phi on the peer's hard labels.

    q^B_j = g_phi(x_u_j (+) y^_B,j) (no gradient), w^B_j = (q^B_j)^T 1[q^B_j >= tau]
    (Eqn 7), and likewise for A;
      L_cps = sum_j w^B_j BCE_j(f_A, y^_B) / sum_j w^B_j
            + sum_j w^A_j BCE_j(f_B, y^_A) / sum_j w^A_j      (each 0 when its w are 0),
    BCE_j the pixel-mean BCE of sample j; L = L_sup(A) + L_sup(B) + lambda(t) L_cps.
    """

    name = "cps_quality_weighted"
    acronym = "CPS-QW"
    quality_base = "cps"
    row = 100
    uses_quality = True

    def cross_terms(
        self, batch: Batch, logits_a: torch.Tensor, logits_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, Logs]:
        hard_a = (logits_a.detach() > 0).float()
        hard_b = (logits_b.detach() > 0).float()
        q_a, w_a = self.quality_weighting(batch.x_u, hard_a)
        q_b, w_b = self.quality_weighting(batch.x_u, hard_b)
        loss_a = weighted_mean(bce_per_sample(logits_a, hard_b), w_b)
        loss_b = weighted_mean(bce_per_sample(logits_b, hard_a), w_a)
        logs = {
            **weight_logs(torch.cat([q_a, q_b]), torch.cat([w_a, w_b])),
            **weight_logs(q_a, w_a, prefix="a_"),
            **weight_logs(q_b, w_b, prefix="b_"),
        }
        return loss_a, loss_b, logs
