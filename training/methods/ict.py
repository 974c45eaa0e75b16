"""Interpolation consistency baselines ICT and ICT-QW (docs/METHOD.md §7.3).

ICT (Verma et al. 2019): the student's prediction on a mix of two unlabeled images should
equal the same mix of the EMA teacher's predictions on the two images. ICT-QW weights each
mixed sample by the same mix of the two images' quality weights (Eqn 7).
"""

from __future__ import annotations

import torch

from training.methods.base import Batch, Flag, Logs, SSLMethod, StepInfo, register
from training.methods.mean_teacher import CONSISTENCY_TYPE, consistency_term
from training.methods.quality import weight_logs


def mix(a: torch.Tensor, perm: torch.Tensor, lam_mix: float) -> torch.Tensor:
    """lam a + (1 - lam) a[perm] (images, probabilities or per-sample weights)."""
    return lam_mix * a + (1.0 - lam_mix) * a[perm]


@register
class InterpolationConsistency(SSLMethod):
    """ICT (Verma et al. 2019): L = L_sup + lambda(t) * D(p_s(x_mix), mix(p_t)).

    One lam_mix ~ Beta(alpha, alpha) (--ict_alpha 1, i.e. uniform) and one random
    derangement pi of the unlabeled batch per step:
      x_mix = lam_mix x_u + (1 - lam_mix) x_u[pi],
      target = lam_mix p_t + (1 - lam_mix) p_t[pi],  p_t = sigmoid(f_ema(x_u)) (no noise:
      the mixing is the perturbation),
    D the pixel-mean MSE (or KL, --consistency_type) between sigmoid(f_theta(x_mix)) and
    the target. Mixing a batch with a permutation of itself stands in for the paper's
    two unlabeled batches (docs/METHOD.md §7.3): the same pairs in distribution, at half
    the data loading.
    lam_mix and pi come from torch's global CPU RNG, which the loop seeds.
    """

    name = "ict"
    acronym = "ICT"
    row = 70
    uses_teacher = True
    flags = (Flag("--ict_alpha", 1.0, "lam_mix ~ Beta(alpha, alpha)"), CONSISTENCY_TYPE)

    def sample_mix(self, n: int, device: torch.device) -> tuple[float, torch.Tensor]:
        """(lam_mix, partner of each sample) for this step.

        The partners are a random derangement (no sample mixed with itself, which would
        be no mix at all): a random cyclic order sigma, each sample paired with the next
        one in it, pi(sigma_k) = sigma_(k+1).
        """
        alpha = torch.tensor(float(self.args.ict_alpha))
        lam_mix = float(torch.distributions.Beta(alpha, alpha).sample())
        sigma = torch.randperm(n)
        perm = torch.empty_like(sigma)
        perm[sigma] = sigma.roll(-1)
        return lam_mix, perm.to(device)

    def sample_weights(
        self, batch: Batch, p_t: torch.Tensor, lam_mix: float, perm: torch.Tensor
    ) -> tuple[torch.Tensor | None, Logs]:
        """Weights of the mixed samples (None: unweighted) and their logs."""
        return None, {}

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        lam_mix, perm = self.sample_mix(len(batch.x_u), batch.x_u.device)
        p_t = self.teacher_probs(batch.x_u)
        target = mix(p_t, perm, lam_mix)
        logits_l, logits_mix = self.student_forward(batch, x_u=mix(batch.x_u, perm, lam_mix))
        loss_sup = self.supervised(logits_l, batch)
        p_s = torch.sigmoid(logits_mix.float())
        w_mix, u_logs = self.sample_weights(batch, p_t, lam_mix, perm)
        loss_u = consistency_term(self.args.consistency_type, p_s, target, sample_weights=w_mix)
        return self.objective(info, loss_sup, loss_u, {"lam_mix": lam_mix, **u_logs})


@register
class InterpolationConsistencyQuality(InterpolationConsistency):
    """ICT-QW: ICT with mixed sample j weighted by lam_mix w_j + (1 - lam_mix) w_pi(j).

    w = q^T 1[q >= tau] (Eqn 7) with q = g_phi(x_u (+) 1[p_t > 0.5]) on the two unmixed
    images (no gradient); L_u = sum_j w^mix_j D_j / sum_j w^mix_j (Eqn 8, 0 when all are 0),
    D_j the per-sample consistency of mixed sample j; L = L_sup + lambda(t) L_u.
    """

    name = "ict_quality"
    acronym = "ICT-QW"
    quality_base = "ict"
    row = 80
    uses_quality = True

    def sample_weights(
        self, batch: Batch, p_t: torch.Tensor, lam_mix: float, perm: torch.Tensor
    ) -> tuple[torch.Tensor | None, Logs]:
        q, w = self.quality_weighting(batch.x_u, (p_t > 0.5).float())
        return mix(w, perm, lam_mix), weight_logs(q, w)
