"""VerSemi's losses in 2D (docs/METHOD.md §11), with its code's defects fixed: Dice per
sample (so that samples can be weighted), the aggregated target detached, every paste
term on its own region. `net(x, task)` is a `PromptedSegNet`; tasks 0..K-1 are the data
sets, task K the synthetic "any foreground" task.

Stage 1, labeled images x_a of task t_a and x_b = x_a[partner] of another task t_b, box M:
    x_mix = x_a (1 - M) + x_b M,  y_mix = y_a (1 - M) + y_b M
    L1 = DiceCE(p_ta(x_a), y_a) + Dice(p_syn(x_mix), y_mix)
         + 0.5 [Dice(p_ta(x_mix), y_a (1 - M)) + Dice(p_tb(x_mix), y_b M)]
Stage 2 adds, for unlabeled images x_u pasted into labeled ones (box M'):
    x~ = x_u M' + x_l (1 - M'),  y^ = max_k p_k(x~), k over the K data-set prompts, detached
    L2 = L1 + Dice(p_syn(x~), y^) + Dice(p_syn(x~) (1 - M'), y_l (1 - M'))
"""

from __future__ import annotations

import torch

from training.losses import dice_ce_per_sample, soft_dice_per_sample, weighted_sample_mean


def dice_loss_per_sample(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per sample, (B,)."""
    return 1.0 - soft_dice_per_sample(torch.sigmoid(logits.float()), target)


def paste(a: torch.Tensor, b: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """a outside the box, b inside it (images and masks alike)."""
    return a * (1.0 - box) + b * box


def prompts(*rows: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """A (P, B) prompt tensor from task vectors (B,) or single task indices."""
    return torch.stack(
        [r if isinstance(r, torch.Tensor) else torch.full_like(like, int(r)) for r in rows]
    )


def stage1_loss(
    net, x: torch.Tensor, y: torch.Tensor, tasks: torch.Tensor, box: torch.Tensor,
    partner: torch.Tensor, synthetic: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """L1 (batch mean) and its terms; `partner[j]` is an image of another task than j's.
    Two encoder-decoder forwards: x under its own prompts, x_mix under the synthetic, its
    own and its partner's prompts at once."""
    x_b, y_b, t_b = x[partner], y[partner], tasks[partner]
    x_mix, y_mix = paste(x, x_b, box), paste(y, y_b, box)
    sup = dice_ce_per_sample(net(x, tasks), y)
    syn_logits, own_a_logits, own_b_logits = net(x_mix, prompts(synthetic, tasks, t_b, like=tasks))
    syn = dice_loss_per_sample(syn_logits, y_mix)
    own_a = dice_loss_per_sample(own_a_logits, y * (1.0 - box))
    own_b = dice_loss_per_sample(own_b_logits, y_b * box)
    loss = sup.mean() + syn.mean() + 0.5 * (own_a + own_b).mean()
    terms = {
        "loss_sup": sup.mean(),
        "loss_syn": syn.mean(),
        "loss_paste": 0.5 * (own_a + own_b).mean(),
    }
    return loss, {k: v.detach() for k, v in terms.items()}


def aggregate(probs: torch.Tensor) -> torch.Tensor:
    """y^ = max over the K data-set prompts (the leading axis), detached (the code's fix)."""
    return probs.detach().float().amax(0)


@torch.no_grad()
def aggregated_target(net, x: torch.Tensor, num_datasets: int) -> torch.Tensor:
    """y^ of images `x`: max over the K data-set prompts of p_k(x), without gradient."""
    like = torch.zeros(len(x), dtype=torch.long, device=x.device)
    return aggregate(torch.sigmoid(net(x, prompts(*range(num_datasets), like=like)).float()))


def stage2_terms(
    net, x_u: torch.Tensor, x_l: torch.Tensor, y_l: torch.Tensor, box: torch.Tensor,
    num_datasets: int, weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:  # fmt: skip
    """Stage 2's unlabeled terms, their logs and the detached target y^. One forward of x~
    under the K data-set prompts (the target, detached) and the synthetic one. The
    aggregated term is the batch mean, or with `weights` (g_phi, VerSemi-QW) Eqn 8's
    weighted mean; the region term keeps the labeled image's part of the synthetic
    prediction."""
    x_mix = paste(x_l, x_u, box)
    like = torch.zeros(len(x_mix), dtype=torch.long, device=x_mix.device)
    out = net(x_mix, prompts(*range(num_datasets + 1), like=like))
    target = aggregate(torch.sigmoid(out[:num_datasets].float()))
    logits = out[num_datasets]
    agg = dice_loss_per_sample(logits, target)
    agg_mean = agg.mean() if weights is None else weighted_sample_mean(agg, weights)
    keep = 1.0 - box
    region = (1.0 - soft_dice_per_sample(torch.sigmoid(logits.float()) * keep, y_l * keep)).mean()
    return (
        agg_mean + region,
        {"loss_agg": agg_mean.detach(), "loss_region": region.detach()},
        target,
    )
