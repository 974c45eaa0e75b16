"""Losses of Phase 2 (docs/METHOD.md §4.1, §5-§7): supervised DiceCE (Eqn 4), masked and
sample-weighted variants (Eqn 8), consistency losses of the baselines and the QAR term
(Eqn 6).

Everything is computed in float32 with autocast switched off, also when called inside an
fp16/bf16 autocast region: per-image sums run over 50k pixels, which overflow (fp16 tops
out at 65504) or lose most of their precision in half precision.

Shapes: logits, probabilities, targets and pixel weights are (B, 1, H, W) or any (B, ...)
with the same number of elements per sample; per-sample losses are (B,). Targets, pixel
weights and sample weights are constants: no gradient flows through them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F

_F = TypeVar("_F", bound=Callable[..., torch.Tensor])


def _float32(fn: _F) -> _F:
    """Run `fn` with autocast disabled on the device of its first tensor argument."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device_type = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> float32 (B, N)."""
    if x.dim() == 0:
        raise ValueError("expected a batched tensor (B, ...), got a scalar")
    return x.float().reshape(x.shape[0], -1)


def _flat_pair(
    a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten two batched tensors that must hold the same number of elements per sample
    ((B, 1, H, W) against (B, H, W) is accepted; anything else is a caller bug)."""
    fa, fb = _flat(a), _flat(b)
    if fa.shape != fb.shape:
        raise ValueError(
            f"{names[0]} {tuple(a.shape)} and {names[1]} {tuple(b.shape)} do not match "
            "(same batch size and number of pixels per sample expected)"
        )
    return fa, fb


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den > 0, else num (which is then 0: every weight was 0).

    torch.where instead of `if den > 0` keeps the graph connected and avoids a GPU sync.
    """
    return num / torch.where(den > 0, den, torch.ones_like(den))


@_float32
def soft_dice_per_sample(
    probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Soft Dice per sample, (2 sum(p t) + eps) / (sum p + sum t + eps), shape (B,).

    eps makes two empty masks score exactly 1 and is negligible otherwise (sums are pixel
    counts, hundreds to tens of thousands at 224 px).
    """
    p, t = _flat_pair(probs, target, ("probs", "target"))
    t = t.detach()
    return (2.0 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)


@_float32
def bce_per_sample(
    logits: torch.Tensor, target: torch.Tensor, pixel_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE-with-logits per sample (B,): the mean over its pixels, or with `pixel_weight`
    the weighted mean over its kept pixels (0, graph-connected, for a sample with none)."""
    x, t = _flat_pair(logits, target, ("logits", "target"))
    bce = F.binary_cross_entropy_with_logits(x, t.detach(), reduction="none")
    if pixel_weight is None:
        return bce.mean(1)
    _, w = _flat_pair(logits, pixel_weight, ("logits", "pixel_weight"))
    w = w.detach()
    return _safe_ratio((bce * w).sum(1), w.sum(1))


@_float32
def dice_ce_per_sample(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eqn 4 per sample, "DiceCE": 0.5 BCE + 0.5 (1 - soft Dice), shape (B,).

    BCE is the mean over the pixels of the sample; soft Dice is on sigmoid(logits). This is
    also PL-QW's l_j against the teacher's hard labels (Eqn 8).
    """
    bce = bce_per_sample(logits, target)  # first: its shape error names `logits`
    dice = soft_dice_per_sample(torch.sigmoid(logits.float()), target)
    return 0.5 * bce + 0.5 * (1.0 - dice)


@_float32
def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eqn 4, the supervised loss: the batch mean of the per-sample DiceCE (Dice per
    sample, then averaged; docs/METHOD.md §4.1)."""
    return dice_ce_per_sample(logits, target).mean()


@_float32
def masked_bce(
    logits: torch.Tensor, target: torch.Tensor, pixel_weight: torch.Tensor
) -> torch.Tensor:
    """PL-T's BCE: sum(w * bce) / sum(w) over every pixel of the batch, w in {0, 1} (kept
    pixels) or soft. Exactly 0, still attached to the graph, when nothing is kept."""
    x, t = _flat_pair(logits, target, ("logits", "target"))
    _, w = _flat_pair(logits, pixel_weight, ("logits", "pixel_weight"))
    w = w.detach()
    bce = F.binary_cross_entropy_with_logits(x, t.detach(), reduction="none")
    return _safe_ratio((bce * w).sum(), w.sum())


@_float32
def masked_dice_loss(
    probs: torch.Tensor, target: torch.Tensor, pixel_weight: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """UniMatch's Dice loss on confident pixels, for one sigmoid channel: the two-class
    (foreground p, background 1 - p) soft Dice of the whole batch, each class
    1 - (2 sum w p t + eps) / (sum w p^2 + sum w t^2 + eps), averaged over the classes.

    `pixel_weight` (detached) is UniMatch's 1 - ignore mask (confidence >= threshold), or
    that mask times per-sample quality weights (-QW variants). Exactly 0, graph-connected,
    when every weight is 0. With one-hot 2-class targets this equals UniMatch's softmax
    Dice of logits (0, z) (docs/METHOD.md §7.6).
    """
    p, t = _flat_pair(probs, target, ("probs", "target"))
    _, w = _flat_pair(probs, pixel_weight, ("probs", "pixel_weight"))
    t, w = t.detach(), w.detach()
    loss = p.new_zeros(())
    for pc, tc in ((p, t), (1.0 - p, 1.0 - t)):
        inter = (w * pc * tc).sum()
        denom = (w * pc * pc).sum() + (w * tc * tc).sum()
        loss = loss + 1.0 - (2.0 * inter + eps) / (denom + eps)
    return loss / 2.0


@_float32
def weighted_sample_mean(per_sample: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eqn 8 normalisation: sum_j w_j l_j / sum_j w_j.

    Exactly 0 when every weight is 0, and still attached to `per_sample`'s graph so that
    backward() runs (with zero gradients) on every rank of a distributed step. Weights are
    constants (detached; g_phi's q_j carries no gradient) and must be >= 0.
    """
    if per_sample.dim() != 1 or weights.shape != per_sample.shape:
        raise ValueError(
            f"per_sample and weights must both be (B,), got {tuple(per_sample.shape)} and "
            f"{tuple(weights.shape)}"
        )
    w = weights.detach().float()
    return _safe_ratio((w * per_sample.float()).sum(), w.sum())


def _reduce_pixels(
    values: torch.Tensor, pixel_weight: torch.Tensor | None, per_sample: bool
) -> torch.Tensor:
    """Mean of (B, N) per-pixel values over all pixels or the kept ones (weighted), per
    sample (B,) or over the batch (scalar); kept-nothing gives 0, graph-connected."""
    if pixel_weight is None:
        return values.mean(1) if per_sample else values.mean()
    _, w = _flat_pair(values, pixel_weight, ("values", "pixel_weight"))
    w = w.detach()
    if per_sample:
        return _safe_ratio((values * w).sum(1), w.sum(1))
    return _safe_ratio((values * w).sum(), w.sum())


def _squared_error(ps: torch.Tensor, pt: torch.Tensor) -> torch.Tensor:
    """(p_s - p_t)^2 per pixel (MT, ICT; the release's CONSISTENCY_TYPE mse)."""
    return (ps - pt) ** 2


def _bernoulli_kl(ps: torch.Tensor, pt: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """KL(teacher || student) of the per-pixel Bernoulli distributions,
    p_t log(p_t / p_s) + (1 - p_t) log((1 - p_t) / (1 - p_s)) (CONSISTENCY_TYPE kl).
    Probabilities are clamped to [eps, 1 - eps] so saturated sigmoids give finite values."""
    ps = ps.clamp(eps, 1.0 - eps)
    pt = pt.clamp(eps, 1.0 - eps)
    return pt * (pt.log() - ps.log()) + (1.0 - pt) * (torch.log1p(-pt) - torch.log1p(-ps))


# The per-pixel distances of the consistency losses, by the release's CONSISTENCY_TYPE.
CONSISTENCY_DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": _squared_error,
    "kl": _bernoulli_kl,
}


@_float32
def consistency_loss(
    kind: str,
    p_student: torch.Tensor,
    p_teacher: torch.Tensor,
    pixel_weight: torch.Tensor | None = None,
    per_sample: bool = False,
) -> torch.Tensor:
    """The `kind` ("mse" or "kl", `CONSISTENCY_DISTANCES`) distance between sigmoid
    probabilities of one channel, averaged over pixels (MT, ICT; UA-MT over the kept
    pixels); the teacher is detached. Scalar, or (B,) with per_sample=True (the -QW
    variants weight it with Eqn 8)."""
    ps, pt = _flat_pair(p_student, p_teacher, ("p_student", "p_teacher"))
    return _reduce_pixels(CONSISTENCY_DISTANCES[kind](ps, pt.detach()), pixel_weight, per_sample)


@_float32
def qar_loss(quality: torch.Tensor) -> torch.Tensor:
    """Eqn 6: L_qar = 1 - mean_j g_phi(x_u_j (+) p_u_j), quality (B,) or (B, 1) in [0, 1].

    Gradients flow through `quality` into f_theta (g_phi itself is frozen)."""
    if quality.numel() == 0:
        raise ValueError("qar_loss needs at least one quality score")
    return 1.0 - quality.float().mean()
