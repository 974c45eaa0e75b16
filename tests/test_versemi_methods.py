"""VerSemi's methods (docs/METHOD.md §11): the multi-task registry, every variant's two
steps (finite, the student moves, g_phi bit-identical), stage 2 only in stage 2, VerSemi-QW
at uniform weights equal to VerSemi, one forward under several prompts equal to one forward
per prompt, per-task g_phi dispatch."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from models.seg_models import create_seg_model
from models.versemi import FixedPrompt, PromptedSegNet
from tests.conftest import write_tiny_gphi
from training.methods import METHODS, MULTITASK_METHODS, Batch, StepInfo, get_method
from training.methods.quality import QualityScorer
from training.methods.versemi import TaskQuality

SIZE = 32
NUM_DATASETS = 2
STAGE1 = StepInfo(step=3, epoch=0.5, lam=0.0, ramp=0.0)
STAGE2 = StepInfo(step=3, epoch=5.0, lam=1.0, ramp=1.0)


def base_net(seed: int):
    torch.manual_seed(seed)
    return create_seg_model("unetpp", encoder="tu-test_resnet", encoder_weights=None,
                            image_size=SIZE, decoder_channels=(16, 8, 8, 8, 8))  # fmt: skip


def network(cls, seed: int = 0) -> torch.nn.Module:
    """As the loop builds it: prompted methods get the dynamic head over K + 1 tasks."""
    base = base_net(seed)
    return PromptedSegNet(base, NUM_DATASETS + 1) if cls.prompted else base


def method_args(cls, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--ema_decay", type=float, default=0.999)
    parser.add_argument("--ema_initial_decay", type=float, default=0.5)
    parser.add_argument("--ema_warmup_steps", type=int, default=1000)
    cls.add_arguments(parser)
    args = parser.parse_args(list(argv))
    args.num_datasets, args.seed = NUM_DATASETS, 7
    return args


class ConstantScorer:
    """A g_phi stand-in that rates every mask `value` (VerSemi-QW's uniform-weight case)."""

    def __init__(self, value: float) -> None:
        self.value, self.model = value, torch.nn.Linear(1, 1)

    def __call__(self, x, masks, grad=False):
        return torch.full((len(x),), self.value)

    def parameters_snapshot(self):
        return [p.detach().clone() for p in self.model.parameters()]


def make(cls, quality=None, *argv: str, seed: int = 0):
    return cls(method_args(cls, *argv), [network(cls, seed)], quality if cls.uses_quality else None)


def multitask_batch(seed: int = 0) -> Batch:
    """Four labeled images, two per task (disks of two radii), four unlabeled images."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    radius = torch.tensor([5.0, 5.0, 9.0, 9.0]).view(-1, 1, 1, 1)
    y = (((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) < radius**2).float()
    return Batch(
        x_l=torch.randn(4, 3, SIZE, SIZE, generator=g),
        y_l=y.contiguous(),
        x_u=torch.randn(4, 3, SIZE, SIZE, generator=g),
        t_l=torch.tensor([0, 0, 1, 1]),
        t_u=torch.tensor([0, 1, 0, 1]),
    )


@pytest.fixture(scope="module")
def quality(tmp_path_factory):
    """A real (untrained, tiny) g_phi, frozen, as the multi-task loop wraps it."""
    path = write_tiny_gphi(tmp_path_factory.mktemp("g_phi"), SIZE)
    return TaskQuality([QualityScorer(path, torch.device("cpu"), image_size=SIZE)])


def flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_multitask_registry_is_apart_from_the_single_data_set_one():
    assert [(n, c.acronym) for n, c in MULTITASK_METHODS.items()] == [
        ("pooled_supervised", "Pooled"),
        ("versemi", "VerSemi"),
        ("versemi_quality", "VerSemi-QW"),
        ("versemi_qar", "VerSemi+QAR"),
    ]
    assert not set(MULTITASK_METHODS) & set(METHODS)  # the paper's tables stay as they were
    assert get_method("versemi-qw") is MULTITASK_METHODS["versemi_quality"]
    assert [c.prompted for c in MULTITASK_METHODS.values()] == [False, True, True, True]
    assert {n: c.quality_base for n, c in MULTITASK_METHODS.items() if c.uses_quality} == {
        "versemi_quality": "versemi",
        "versemi_qar": "versemi",
    }


@pytest.mark.parametrize("name", list(MULTITASK_METHODS))
def test_two_steps_in_stage_2_train_the_model_and_leave_g_phi_alone(name, quality):
    cls = MULTITASK_METHODS[name]
    method = make(cls, quality)
    net = method.networks[0]
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    before = flat(net)
    g_phi_before = quality.parameters_snapshot()
    for step in range(2):
        net.train()
        optimizer.zero_grad()
        loss, logs = method.train_step(multitask_batch(step), STAGE2)
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert all(math.isfinite(float(v)) for v in logs.values()), logs
        assert "loss_sup" in logs
        if cls.prompted:
            assert float(logs["loss_agg"]) > 0 and float(logs["loss_syn"]) > 0
        loss.backward()
        optimizer.step()
        method.after_step(step)
    assert not torch.equal(flat(net), before)
    assert all(torch.equal(a, b) for a, b in zip(g_phi_before, quality.parameters_snapshot()))
    assert all(p.grad is None for p in quality.model.parameters())
    if name == "versemi_qar":
        assert float(logs["loss_qar"]) > 0 and 0 < float(logs["mean_quality"]) < 1
    elif name == "versemi_quality":
        assert 0 <= float(logs["kept_fraction"]) <= 1 and "mean_quality" in logs


@pytest.mark.parametrize("name", ["versemi", "versemi_quality", "versemi_qar"])
def test_stage_2_loss_is_active_only_in_stage_2(name, quality):
    cls = MULTITASK_METHODS[name]
    batch = multitask_batch()
    stage1, logs1 = make(cls, quality).train_step(batch, STAGE1)
    # stage 1 ignores the unlabeled images: the loss is the labeled batch's alone
    alone = Batch(batch.x_l, batch.y_l, None, t_l=batch.t_l)
    assert torch.equal(stage1, make(cls, quality).train_step(alone, STAGE1)[0])
    assert float(logs1["loss_agg"]) == 0.0 and float(logs1["loss_region"]) == 0.0
    for column in getattr(cls, "quality_columns", ()):
        assert math.isnan(logs1[column])  # not computed in stage 1, present from row one
    stage2, logs2 = make(cls, quality).train_step(batch, STAGE2)
    terms = float(logs2["loss_agg"]) + float(logs2["loss_region"])
    assert terms > 0 and stage2.item() > stage1.item()


def test_versemi_qw_at_uniform_weights_equals_versemi():
    batch = multitask_batch(3)
    plain, _ = make(MULTITASK_METHODS["versemi"]).train_step(batch, STAGE2)
    qw = make(MULTITASK_METHODS["versemi_quality"], ConstantScorer(0.8))
    weighted, logs = qw.train_step(batch, STAGE2)
    assert float(logs["kept_fraction"]) == 1.0
    assert torch.allclose(weighted, plain, atol=1e-6)
    # every pseudo-label below tau: the aggregated term drops out, the rest stays
    dropped, logs = make(MULTITASK_METHODS["versemi_quality"], ConstantScorer(0.1)).train_step(
        batch, STAGE2
    )
    assert float(logs["loss_agg"]) == 0.0 and dropped.item() < plain.item()


def test_versemi_boxes_are_drawn_from_seed_and_step():
    method = make(MULTITASK_METHODS["versemi"])
    a = method.boxes(4, SIZE, (0.3, 0.6), step=5, stream=1, device="cpu")
    assert torch.equal(a, method.boxes(4, SIZE, (0.3, 0.6), 5, 1, "cpu"))  # a resumed run
    assert not torch.equal(a, method.boxes(4, SIZE, (0.3, 0.6), 6, 1, "cpu"))
    assert not torch.equal(a, method.boxes(4, SIZE, (0.3, 0.6), 5, 0, "cpu"))
    assert set(a.unique().tolist()) == {0.0, 1.0}


def test_versemi_needs_task_indices():
    batch = multitask_batch()
    with pytest.raises(ValueError, match="trains over a task table"):
        make(MULTITASK_METHODS["versemi"]).train_step(
            Batch(batch.x_l, batch.y_l, batch.x_u), STAGE1
        )


def test_several_prompts_in_one_forward_equal_one_forward_each():
    net = network(MULTITASK_METHODS["versemi"]).eval()
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    rows = torch.tensor([[0, 1, 2], [2, 2, 2], [1, 0, 1]])
    with torch.no_grad():
        together = net(x, rows)
        apart = torch.stack([net(x, r) for r in rows])
        fixed = FixedPrompt(net, 2)(x)
    assert together.shape == (3, 3, 1, SIZE, SIZE)
    assert torch.allclose(together, apart, atol=1e-6)
    assert torch.allclose(fixed, together[1], atol=1e-6)
    with pytest.raises(ValueError, match=r"one index per sample"):
        net(x, torch.tensor([[0, 1]]))


def test_task_quality_asks_each_task_its_own_g_phi():
    scorers = TaskQuality([ConstantScorer(0.2), ConstantScorer(0.9)])
    x, masks = torch.zeros(4, 3, 8, 8), torch.zeros(4, 1, 8, 8)
    q = scorers(x, masks, torch.tensor([1, 0, 0, 1]))
    assert q.tolist() == pytest.approx([0.9, 0.2, 0.2, 0.9])
    shared = TaskQuality([ConstantScorer(0.4)])
    assert shared(x, masks, torch.tensor([1, 0, 0, 1])).tolist() == pytest.approx([0.4] * 4)
