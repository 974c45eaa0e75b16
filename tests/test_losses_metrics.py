"""Known-answer tests of Phase 2's losses (training/losses.py), per-image metrics
(training/metrics.py) and evaluation (training/eval_utils.py)."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from data.samplers import EpochSampler
from data.seg_datasets import LabeledSegDataset
from training import losses as L
from training.eval_utils import evaluate_segmentation, format_summary
from training.metrics import METRICS, segmentation_metrics, summarize


def mask(*rows: str) -> torch.Tensor:
    """(1, 1, H, W) float mask from strings such as '0110'."""
    return torch.tensor([[float(c) for c in r] for r in rows])[None, None]


def logits_of(m: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """Confident logits (+-scale) that threshold to `m`."""
    return (m * 2 - 1) * scale


GT = mask("0110", "0110", "0000", "0000")  # 4 foreground pixels of 16


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------


def test_perfect_prediction_scores_one():
    m = segmentation_metrics(logits_of(GT), GT)
    assert set(m) == set(METRICS)
    for name in METRICS:
        assert m[name].shape == (1,) and m[name].dtype == torch.float32
        assert m[name].item() == pytest.approx(1.0, abs=1e-6), name


def test_disjoint_prediction_scores_zero():
    pred = mask("1000", "0000", "0000", "0001")
    m = segmentation_metrics(logits_of(pred), GT)
    for name in ("dice", "jaccard", "f1"):
        assert m[name].item() == 0.0, name
    assert m["pixel_accuracy"].item() == pytest.approx(10 / 16)  # 2 FP + 4 FN wrong


def test_partial_overlap_known_answer():
    pred = mask("0100", "0100", "0100", "0000")  # TP 2, FP 1, FN 2, TN 11
    m = segmentation_metrics(logits_of(pred), GT)
    assert m["dice"].item() == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert m["jaccard"].item() == pytest.approx(2 / 5)
    assert m["f1"].item() == pytest.approx(4 / 7)  # P 2/3, R 1/2
    assert m["pixel_accuracy"].item() == pytest.approx(13 / 16)
    # from probabilities, threshold 0.5 strictly: 0.5 itself is background
    probs = pred * 0.9 + (1 - pred) * 0.5
    mp = segmentation_metrics(probs, GT, from_logits=False)
    assert mp["dice"].item() == pytest.approx(4 / 7)
    # soft Dice on probabilities: 2 * sum(p t) / (sum p + sum t)
    expected_soft = 2 * (2 * 0.9 + 2 * 0.5) / (probs.sum().item() + 4)
    assert mp["soft_dice"].item() == pytest.approx(expected_soft, rel=1e-5)


def test_empty_masks_are_defined():
    empty = torch.zeros_like(GT)
    both = segmentation_metrics(logits_of(empty), empty)
    for name in ("dice", "jaccard", "f1", "pixel_accuracy"):
        assert both[name].item() == 1.0, name
    exact = segmentation_metrics(empty, empty, from_logits=False)
    assert exact["soft_dice"].item() == pytest.approx(1.0)
    missed = segmentation_metrics(logits_of(empty), GT)  # nothing predicted, lesion present
    spurious = segmentation_metrics(logits_of(GT), empty)  # lesion predicted, none present
    for m in (missed, spurious):
        for name in ("dice", "jaccard", "f1"):
            assert m[name].item() == 0.0, name


def test_f1_equals_dice_per_image_on_random_masks():
    g = torch.Generator().manual_seed(0)
    gt = (torch.rand(32, 1, 12, 12, generator=g) > 0.7).float()
    gt[:3] = 0  # include empty ground truths
    logits = torch.randn(32, 1, 12, 12, generator=g) * 3
    logits[1] = -5  # both empty
    m = segmentation_metrics(logits, gt)
    torch.testing.assert_close(m["f1"], m["dice"], atol=1e-6, rtol=0)
    # Per image, not per batch (docs/METHOD.md §4.6): a batch-level F1 differs from the mean.
    hard = torch.sigmoid(logits) > 0.5
    tp = (hard & gt.bool()).sum().item()
    batch_f1 = 2 * tp / (hard.sum().item() + gt.sum().item())
    assert abs(batch_f1 - m["f1"].mean().item()) > 1e-3


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        segmentation_metrics(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))


def test_summarize_population_std():
    s = summarize({"dice": np.array([0.5, 1.0]), "jaccard": [0.2, 0.4, 0.6]})
    assert s["dice"] == {"mean": 0.75, "std": 0.25, "n": 2}
    assert s["jaccard"]["std"] == pytest.approx(math.sqrt(0.08 / 3))  # ddof 0
    with pytest.raises(ValueError, match="'f1' has no values"):
        summarize({"f1": np.array([])})


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------


def test_soft_dice_known_answers():
    probs = torch.full_like(GT, 0.5)
    # 2 * (0.5 * 4) / (0.5 * 16 + 4) = 1/3
    assert L.soft_dice_per_sample(probs, GT).item() == pytest.approx(1 / 3, rel=1e-5)
    empty = torch.zeros(2, 1, 4, 4)
    torch.testing.assert_close(L.soft_dice_per_sample(empty, empty), torch.ones(2))
    assert L.soft_dice_per_sample(GT, GT).item() == pytest.approx(1.0)


def test_dice_ce_known_answer_and_ordering():
    zero = torch.zeros_like(GT)  # p = 0.5 everywhere: BCE ln 2, soft Dice 1/3
    expected = 0.5 * math.log(2) + 0.5 * (1 - 1 / 3)
    assert L.dice_ce_per_sample(zero, GT).item() == pytest.approx(expected, rel=1e-5)
    gt = torch.cat([GT, mask("1100", "1000", "0000", "0000")])
    good = L.dice_ce_per_sample(logits_of(gt, 4), gt)
    bad = L.dice_ce_per_sample(logits_of(1 - gt, 4), gt)
    assert good.shape == (2,) and torch.all(good < bad)
    assert L.dice_ce_per_sample(logits_of(gt, 30), gt).max().item() < 1e-6
    assert L.dice_ce_loss(logits_of(gt, 4), gt).item() == pytest.approx(good.mean().item())


def test_losses_are_float32_under_autocast():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 32, 32, generator=g)
    gt = (torch.rand(2, 1, 32, 32, generator=g) > 0.5).float()
    reference = L.dice_ce_loss(logits.bfloat16().float(), gt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = L.dice_ce_loss(logits.bfloat16(), gt.bfloat16())
        mse = L.consistency_loss("mse", torch.sigmoid(logits).bfloat16(), gt, per_sample=True)
    assert out.dtype == torch.float32 and mse.dtype == torch.float32
    assert out.item() == pytest.approx(reference.item(), rel=1e-6)
    half = L.dice_ce_loss(logits.half(), gt.half())  # fp16 inputs outside autocast too
    assert half.dtype == torch.float32


def test_masked_bce_over_kept_pixels_and_zero_when_nothing_kept():
    logits = torch.tensor([[[[3.0, -2.0, 0.5, 1.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.0, 1.0, 0.0, 1.0]]]])
    keep = torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]]])
    expected = F.binary_cross_entropy_with_logits(logits[..., [0, 2]], target[..., [0, 2]])
    assert L.masked_bce(logits, target, keep).item() == pytest.approx(expected.item())
    soft = keep * 0.25  # soft weights: a weighted mean, not divided by a count
    assert L.masked_bce(logits, target, soft).item() == pytest.approx(expected.item())
    nothing = L.masked_bce(logits, target, torch.zeros_like(keep))
    assert nothing.item() == 0.0 and nothing.requires_grad
    nothing.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    per = L.bce_per_sample(logits, target, keep)
    assert per.shape == (1,) and per.item() == pytest.approx(expected.item())


def test_weighted_sample_mean_eqn8():
    per = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert L.weighted_sample_mean(per, torch.tensor([1.0, 0.0, 1.0])).item() == 2.0
    assert L.weighted_sample_mean(per, torch.tensor([0.2, 0.0, 0.6])).item() == pytest.approx(2.5)
    zero = L.weighted_sample_mean(per, torch.zeros(3))
    assert zero.item() == 0.0 and zero.requires_grad  # graph-connected
    zero.backward()
    assert torch.equal(per.grad, torch.zeros(3))
    w = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    L.weighted_sample_mean(per, w).backward()
    assert w.grad is None  # weights are constants
    with pytest.raises(ValueError, match=r"\(B,\)"):
        L.weighted_sample_mean(per, torch.ones(2))


def test_consistency_losses_known_answers():
    ps = torch.tensor([[[[0.2, 0.8]]], [[[0.5, 0.5]]]], requires_grad=True)
    pt = torch.tensor([[[[0.2, 0.4]]], [[[0.0, 1.0]]]], requires_grad=True)
    # squared errors: sample 0 (0, 0.16), sample 1 (0.25, 0.25)
    per = L.consistency_loss("mse", ps, pt, per_sample=True)
    torch.testing.assert_close(per, torch.tensor([0.08, 0.25]))
    total = L.consistency_loss("mse", ps, pt)
    assert total.item() == pytest.approx(0.165)
    total.backward()
    assert pt.grad is None and ps.grad is not None  # the teacher is a target
    keep = torch.tensor([[[[0.0, 1.0]]], [[[0.0, 0.0]]]])
    assert L.consistency_loss("mse", ps, pt, keep).item() == pytest.approx(0.16)
    torch.testing.assert_close(
        L.consistency_loss("mse", ps, pt, keep, per_sample=True), torch.tensor([0.16, 0.0])
    )
    assert L.consistency_loss("kl", ps, ps.detach()).item() == pytest.approx(0.0, abs=1e-6)
    p, q = 0.8, 0.4  # KL(Bern(q) || Bern(p)) for pixel 2 of sample 0
    kl = q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))
    per_kl = L.consistency_loss("kl", ps, pt, per_sample=True)
    assert per_kl[0].item() == pytest.approx(kl / 2, rel=1e-5)
    assert torch.isfinite(per_kl).all()  # saturated teacher (0 and 1) stays finite


def test_qar_loss_eqn6_and_gradient():
    q = torch.tensor([0.9, 0.7], requires_grad=True)
    loss = L.qar_loss(q)
    assert loss.item() == pytest.approx(0.2)
    loss.backward()
    torch.testing.assert_close(q.grad, torch.tensor([-0.5, -0.5]))


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"logits .* and target"):
        L.dice_ce_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 3))
    # (B, 1, H, W) logits against (B, H, W) targets is the same layout
    assert L.dice_ce_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4)).isfinite()


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


class RedIsForeground(nn.Module):
    """Logits from the red channel: predicts exactly the mask of red_is_mask images. Has a
    dropout layer so eval mode matters."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.9)
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x[:, :1] * self.scale)


def eval_set(n: int = 6) -> LabeledSegDataset:
    """n >= 5 images whose red channel is the mask; images 4 and 5 get a wrong mask."""
    rng = np.random.default_rng(0)
    masks = np.zeros((n, 8, 8), np.uint8)
    for k in range(n):
        masks[k, 1 : 3 + k % 6, 2:6] = 1
    images = rng.integers(0, 100, (n, 8, 8, 3), dtype=np.uint8)
    images[..., 0] = masks * 255
    masks[4] = 0  # predicted lesion, empty GT: Dice 0
    if n > 5:
        masks[5] = np.roll(masks[5], 2, axis=1)  # shifted GT: partial overlap
    return LabeledSegDataset.from_arrays(images, masks, augment=False)


def test_evaluate_segmentation_known_answers_and_mode_restore():
    ds = eval_set()
    model = RedIsForeground().train()
    per_image = evaluate_segmentation(model, DataLoader(ds, batch_size=4), torch.device("cpu"))
    assert model.training  # restored
    assert set(per_image) == set(METRICS)
    dice = per_image["dice"]
    assert dice.shape == (6,)
    np.testing.assert_allclose(dice[:4], 1.0)  # dropout off: exact predictions
    assert dice[4] == 0.0
    assert 0 < dice[5] < 1
    model.eval()
    evaluate_segmentation(model, DataLoader(ds, batch_size=4), torch.device("cpu"))
    assert not model.training
    line = format_summary(summarize(per_image))
    assert line.startswith(f"dice {dice.mean():.3f} +- {dice.std():.3f}, jaccard ")


def test_evaluate_segmentation_orders_by_index_and_drops_padding():
    ds = eval_set()
    model = RedIsForeground()
    reference = evaluate_segmentation(model, DataLoader(ds, batch_size=6), torch.device("cpu"))
    # A shuffled order in batches of 4: the result is ordered by image index again.
    sampler = EpochSampler(len(ds), shuffle=True, seed=3)
    shuffled = evaluate_segmentation(
        model, DataLoader(ds, batch_size=4, sampler=sampler), torch.device("cpu")
    )
    for name in METRICS:
        np.testing.assert_array_equal(shuffled[name], reference[name])


def test_evaluate_segmentation_empty_loader_is_an_error():
    ds = eval_set()
    empty = DataLoader(torch.utils.data.Subset(ds, []), batch_size=2)
    with pytest.raises(ValueError, match="no batches"):
        evaluate_segmentation(RedIsForeground(), empty, torch.device("cpu"))


def _ddp_worker(rank: int, world_size: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        ds = eval_set(5)
        sampler = EpochSampler(len(ds), shuffle=False, rank=rank, world_size=world_size)
        loader = DataLoader(ds, batch_size=2, sampler=sampler)
        per_image = evaluate_segmentation(RedIsForeground(), loader, torch.device("cpu"))
        np.save(os.path.join(out, f"rank{rank}.npy"), per_image["dice"])
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_evaluate_segmentation_gathers_all_ranks(tmp_path):
    """2 gloo ranks over 5 images (one padded duplicate): each returns all 5, in order."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    reference = evaluate_segmentation(
        RedIsForeground(), DataLoader(eval_set(5), batch_size=5), torch.device("cpu")
    )["dice"]
    assert reference.shape == (5,)
    for rank in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"rank{rank}.npy"), reference)
