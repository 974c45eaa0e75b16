"""Fidelity of the method pieces to their definitions (docs/METHOD.md §4.7, §5, §7.4, §7.5):
CL-QW pools as CL does, CPS clips each network alone, --mq_resize keeps hard masks hard, and
--bn_forward decides what BatchNorm sees of D_L and D_U.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.conftest import write_tiny_gphi
from tests.test_methods import ACTIVE, SIZE, make_batch, make_method, method_args, tiny_net
from training.methods.base import METHODS
from training.methods.contrastive import Contrastive, ContrastiveQuality
from training.methods.cps import CrossPseudoSupervision
from training.methods.pseudo_label import PseudoLabel
from training.methods.quality import QualityScorer
from training.methods.supervised import Supervised
from training.precision import clip_and_step, make_grad_scaler


@pytest.fixture(scope="module")
def g_phi_path(tmp_path_factory):
    """A tiny untrained g_phi checkpoint trained "at" SIZE px."""
    return write_tiny_gphi(tmp_path_factory.mktemp("g_phi"), SIZE)


@pytest.fixture(scope="module")
def scorer(g_phi_path) -> QualityScorer:
    return QualityScorer(g_phi_path, torch.device("cpu"), image_size=SIZE)


def bn_buffers(net: nn.Module) -> dict[str, torch.Tensor]:
    """Every BatchNorm buffer (running mean/var, batch count), by name."""
    return {
        name: buf.clone()
        for name, buf in net.named_buffers()
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
    }


def assert_same_buffers(a: nn.Module, b: nn.Module) -> None:
    ba, bb = bn_buffers(a), bn_buffers(b)
    assert ba and ba.keys() == bb.keys()
    for name in ba:
        assert torch.equal(ba[name], bb[name]), name


# --------------------------------------------------------------------------------------
# 1. CL-QW pools its weighted pseudo-label term over pixels, as CL does (§7.5)
# --------------------------------------------------------------------------------------


def uneven_pseudo_labels(seed: int = 0):
    """Logits, hard labels and kept pixels with very different kept counts per sample
    (one sample keeps none): where a per-sample mean and a pixel pool disagree."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 1, SIZE, SIZE, generator=g) * 3
    hard = (torch.rand(4, 1, SIZE, SIZE, generator=g) > 0.5).float()
    keep = torch.zeros(4, 1, SIZE, SIZE)
    keep[0] = 1.0
    keep[1, :, :4] = 1.0
    keep[2, :, :, :1] = 1.0
    return logits, hard, keep


@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_cl_qw_at_uniform_weights_equals_cl(scorer, monkeypatch, weight):
    cl = make_method(Contrastive, scorer)
    clqw = make_method(ContrastiveQuality, scorer)
    batch = make_batch(n_u=4)
    logits, hard, keep = uneven_pseudo_labels()
    uniform = (torch.full((4,), 0.7), torch.full((4,), weight))
    monkeypatch.setattr(clqw, "quality_weighting", lambda x_u, labels: uniform)
    loss_cl, _ = cl.pseudo_label_loss(batch, logits, hard, keep)
    loss_qw, _ = clqw.pseudo_label_loss(batch, logits, hard, keep)
    assert torch.allclose(loss_qw, loss_cl, rtol=1e-6, atol=0)

    # The whole step too: same nets, same random anchors, same loss.
    torch.manual_seed(5)
    total_cl, _ = cl.train_step(batch, ACTIVE)
    torch.manual_seed(5)
    total_qw, _ = clqw.train_step(batch, ACTIVE)
    assert torch.allclose(total_qw, total_cl, rtol=1e-6, atol=0)


def test_cl_qw_weights_broadcast_to_pixels(scorer, monkeypatch):
    """Weights (w_0, 0, w_2, w_3): sum_ji w_j m_ji BCE_ji / sum_ji w_j m_ji."""
    clqw = make_method(ContrastiveQuality, scorer)
    logits, hard, keep = uneven_pseudo_labels()
    w = torch.tensor([0.5, 0.0, 1.0, 0.25])
    monkeypatch.setattr(clqw, "quality_weighting", lambda x_u, labels: (w, w))
    loss, _ = clqw.pseudo_label_loss(make_batch(n_u=4), logits, hard, keep)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, hard, reduction="none")
    pw = keep * w.view(-1, 1, 1, 1)
    assert torch.allclose(loss, (pw * bce).sum() / pw.sum(), rtol=1e-6)
    # No weight at all: an exact 0 that is still in the graph.
    monkeypatch.setattr(clqw, "quality_weighting", lambda x_u, labels: (w, w * 0))
    logits.requires_grad_(True)
    zero, _ = clqw.pseudo_label_loss(make_batch(n_u=4), logits, hard, keep)
    assert zero.item() == 0.0 and zero.requires_grad


# --------------------------------------------------------------------------------------
# 2. CPS clips each network's gradient on its own (§7.4, §9)
# --------------------------------------------------------------------------------------


def grad_norm(net: nn.Module) -> float:
    return float(torch.cat([p.grad.flatten() for p in net.parameters()]).norm())


def test_clip_groups_clip_each_network_alone():
    torch.manual_seed(0)
    net_a, net_b = nn.Linear(8, 4), nn.Linear(8, 4)
    x = torch.randn(16, 8)

    def loss_fn():
        return 100.0 * net_a(x).pow(2).sum() + 0.01 * net_b(x).pow(2).sum()

    loss_fn().backward()
    free_b = [p.grad.clone() for p in net_b.parameters()]
    free_a = grad_norm(net_a)
    max_norm = 1.0
    assert free_a > 10 * max_norm and grad_norm(net_b) < max_norm

    params = [*net_a.parameters(), *net_b.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.0)  # lr 0: the step leaves the grads to read
    scaler = make_grad_scaler(torch.device("cpu"), None)
    groups = [list(net_a.parameters()), list(net_b.parameters())]
    norm = clip_and_step(loss_fn(), optimizer, scaler, groups, max_norm)
    assert grad_norm(net_a) <= max_norm * (1 + 1e-5)
    assert grad_norm(net_a) == pytest.approx(max_norm, rel=1e-4)
    for p, g in zip(net_b.parameters(), free_b):
        assert torch.equal(p.grad, g)  # the small network's gradient is untouched
    assert norm == pytest.approx((free_a**2 + grad_norm(net_b) ** 2) ** 0.5, rel=1e-4)

    # A flat parameter list is one group: the global clip, which shrinks B as well.
    clip_and_step(loss_fn(), optimizer, scaler, params, max_norm)
    assert float(torch.stack([p.grad.norm() for p in params]).norm()) <= max_norm * (1 + 1e-5)
    assert grad_norm(net_b) < float(torch.cat([g.flatten() for g in free_b]).norm())


def test_cps_declares_one_clip_group_per_network(scorer):
    for cls in (CrossPseudoSupervision, METHODS["cps_quality_weighted"]):
        method = make_method(cls, scorer)
        groups = method.clip_groups()
        assert len(groups) == 2
        for group, net in zip(groups, method.networks):
            assert [id(p) for p in group] == [id(p) for p in net.parameters()]
    single = make_method(PseudoLabel, scorer).clip_groups()
    assert len(single) == 1 and len(single[0]) == len(list(tiny_net(0).parameters()))


# --------------------------------------------------------------------------------------
# 3. --mq_resize keeps hard masks hard (§5)
# --------------------------------------------------------------------------------------


class Capture(nn.Module):
    """g_phi that records its input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.inputs = model, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.model(x)


def test_mq_resize_hard_masks_nearest_soft_bilinear(g_phi_path):
    scorer = QualityScorer(g_phi_path, torch.device("cpu"), image_size=20, allow_resize=True)
    assert scorer.resize and scorer.size == SIZE
    scorer.model = Capture(scorer.model)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 20, 20, generator=g)
    hard = (torch.rand(2, 1, 20, 20, generator=g) > 0.5).float()

    scorer(images, hard)  # hard pseudo-labels (the -QW weights), no gradient
    mask_in = scorer.model.inputs[-1][:, 3:]
    assert mask_in.shape[-2:] == (SIZE, SIZE)
    assert set(mask_in.unique().tolist()) == {0.0, 1.0}
    resized = scorer.resize_masks(hard, hard=True)
    assert torch.equal(resized, mask_in)

    soft = torch.sigmoid(torch.randn(2, 1, 20, 20, generator=g)).requires_grad_(True)
    q = scorer(images, soft, grad=True)  # QAR's soft prediction: bilinear, differentiable
    expected = nn.functional.interpolate(soft, size=(SIZE, SIZE), mode="bilinear")
    assert torch.allclose(scorer.model.inputs[-1][:, 3:], expected.detach())
    q.sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------
# 4. --bn_forward (§4.7)
# --------------------------------------------------------------------------------------


def test_bn_forward_flag_everywhere_default_mixed():
    for name, cls in METHODS.items():
        args = method_args(cls)
        assert args.bn_forward == ("labeled_only" if name == "supervised" else "mixed")
        for mode in ("mixed", "separate", "labeled_stats"):
            assert method_args(cls, "--bn_forward", mode).bn_forward == mode
    assert not Supervised.loads_unlabeled(method_args(Supervised))
    assert Supervised.loads_unlabeled(method_args(Supervised, "--bn_forward", "mixed"))
    assert all(c.loads_unlabeled(method_args(c)) for n, c in METHODS.items() if n != "supervised")


def test_bn_forward_mixed_is_one_concatenated_forward(scorer):
    method = make_method(PseudoLabel, scorer)
    ref = copy.deepcopy(method.student)
    batch = make_batch()
    logits_l, logits_u = method.student_forward(batch)
    expected = ref(torch.cat([batch.x_l, batch.x_u]))
    assert torch.equal(logits_l, expected[:2]) and torch.equal(logits_u, expected[2:])
    assert_same_buffers(method.student, ref)


@pytest.mark.parametrize("mode", ["separate", "labeled_stats"])
def test_bn_forward_separate_labeled_logits_are_a_labeled_only_forward(scorer, mode):
    method = make_method(PseudoLabel, scorer, "--bn_forward", mode)
    ref_l, ref_u = copy.deepcopy(method.student), copy.deepcopy(method.student)
    batch = make_batch()
    logits_l, logits_u = method.student_forward(batch)
    assert torch.equal(logits_l, ref_l(batch.x_l))
    # Unlabeled images are normalised by their own batch statistics in both modes.
    assert torch.equal(logits_u, ref_u(batch.x_u))
    # Decoder features take the same route (CL, CL-QW).
    (lf, ff), _ = method.student_forward(batch, features=True)
    ref_f = copy.deepcopy(ref_l)
    out, feats = ref_f(batch.x_l, features=True)
    assert torch.equal(ff, feats) and lf.shape == out.shape


def test_bn_forward_labeled_stats_running_stats_from_labeled_only(scorer):
    method = make_method(PseudoLabel, scorer, "--bn_forward", "labeled_stats")
    ref = copy.deepcopy(method.student)
    batch = make_batch()
    method.student_forward(batch)
    ref(batch.x_l)
    assert_same_buffers(method.student, ref)
    assert all(
        m.track_running_stats
        for m in method.student.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )
    # `separate` lets D_U into the running statistics.
    sep = make_method(PseudoLabel, scorer, "--bn_forward", "separate")
    sep.student_forward(batch)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(bn_buffers(sep.student).values(), bn_buffers(ref).values())
    )


def test_bn_forward_reaches_both_cps_networks(scorer):
    method = make_method(CrossPseudoSupervision, scorer, "--bn_forward", "labeled_stats")
    refs = [copy.deepcopy(n) for n in method.networks]
    batch = make_batch()
    method.train_step(batch, ACTIVE)
    for net, ref in zip(method.networks, refs):
        ref(batch.x_l)
        assert_same_buffers(net, ref)


def test_bn_forward_reaches_the_contrastive_step(scorer):
    method = make_method(Contrastive, scorer, "--bn_forward", "labeled_stats")
    ref = copy.deepcopy(method.student)
    batch = make_batch()
    method.train_step(batch, ACTIVE)
    ref(batch.x_l)
    assert_same_buffers(method.student, ref)


def test_sup_bn_forward_control(scorer):
    batch = make_batch()
    default = make_method(Supervised, scorer)
    ref = copy.deepcopy(default.student)
    loss, _ = default.train_step(batch, ACTIVE)
    ref(batch.x_l)  # D_U is never forwarded by default
    assert_same_buffers(default.student, ref)

    mixed = make_method(Supervised, scorer, "--bn_forward", "mixed")
    ref = copy.deepcopy(mixed.student)
    loss_mixed, _ = mixed.train_step(batch, ACTIVE)
    ref(torch.cat([batch.x_l, batch.x_u]))  # BN sees D_U as the SSL methods' does
    assert_same_buffers(mixed.student, ref)
    assert not torch.equal(loss_mixed, loss)
    with pytest.raises(ValueError, match="--unlabeled_csv"):
        mixed.train_step(make_batch(unlabeled=False), ACTIVE)
