"""EMA teacher (docs/METHOD.md §4.4): decay schedule, in-place averaging that moves the
teacher toward the student (an EMA that drops its update decays to zero), buffers copied."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.ema import EMATeacher, unwrap_model


def small_bn_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1)
    )


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def train_student(student: nn.Module, steps: int = 3) -> None:
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    student.train()
    for _ in range(steps):
        opt.zero_grad()
        student(torch.randn(2, 3, 8, 8)).pow(2).mean().backward()
        opt.step()


def test_decay_schedule():
    ema = EMATeacher(small_bn_net())
    assert ema.decay(0) == pytest.approx(0.5)
    assert ema.decay(500) == pytest.approx(0.5 + 0.499 * 0.5)
    assert ema.decay(1000) == pytest.approx(0.999)
    assert ema.decay(5000) == pytest.approx(0.999)
    custom = EMATeacher(small_bn_net(), final_decay=0.99, initial_decay=0.0, warmup_steps=10)
    assert custom.decay(5) == pytest.approx(0.495)
    assert custom.decay(10) == pytest.approx(0.99)


def test_teacher_moves_toward_student_in_place():
    torch.manual_seed(0)
    student = small_bn_net()
    ema = EMATeacher(student)
    train_student(student)
    before = (flat(ema.model) - flat(student)).norm()
    teacher_before = flat(ema.model).clone()
    decay = ema.update(student, step=0)
    after = (flat(ema.model) - flat(student)).norm()
    assert decay == pytest.approx(0.5)
    assert after < before  # moved toward the student, not toward zero
    torch.testing.assert_close(after, before * 0.5)  # exactly d * distance for a linear EMA
    torch.testing.assert_close(flat(ema.model), 0.5 * teacher_before + 0.5 * flat(student))
    # many updates converge on a fixed student instead of decaying to zero
    for step in range(1, 50):
        ema.update(student, step)
    assert (flat(ema.model) - flat(student)).norm() < 1e-3 * before
    assert flat(ema.model).norm() > 0.5 * flat(student).norm()


def test_buffers_copied_and_no_grads():
    torch.manual_seed(0)
    student = small_bn_net()
    ema = EMATeacher(student)
    train_student(student)  # moves BN running stats and num_batches_tracked
    ema.update(student, step=10)
    s_bn, t_bn = student[1], ema.model[1]
    torch.testing.assert_close(t_bn.running_mean, s_bn.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(t_bn.running_var, s_bn.running_var, rtol=0, atol=0)
    assert t_bn.num_batches_tracked.item() == s_bn.num_batches_tracked.item() == 3
    assert all(not p.requires_grad for p in ema.parameters())
    out = ema(torch.randn(2, 3, 8, 8))
    assert not out.requires_grad and all(p.grad is None for p in ema.parameters())
    ema.train()  # a parent's train() must not put the teacher's BatchNorm in train mode
    assert not ema.model.training


def test_state_dict_round_trip():
    torch.manual_seed(0)
    student = small_bn_net()
    ema = EMATeacher(student)
    train_student(student)
    ema.update(student, step=3)
    restored = EMATeacher(small_bn_net())
    restored.load_state_dict(ema.state_dict())
    for a, b in zip(ema.state_dict().values(), restored.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(not p.requires_grad for p in restored.parameters())


def test_wrapped_student_is_unwrapped():
    student = small_bn_net()
    wrapped = nn.DataParallel(student)  # same `.module` interface as DistributedDataParallel
    assert unwrap_model(wrapped) is student
    ema = EMATeacher(wrapped)
    assert set(dict(ema.model.named_parameters())) == set(dict(student.named_parameters()))
    train_student(student)
    before = (flat(ema.model) - flat(student)).norm()
    ema.update(wrapped, step=0)
    torch.testing.assert_close((flat(ema.model) - flat(student)).norm(), 0.5 * before)


def test_mismatched_student_is_rejected():
    ema = EMATeacher(small_bn_net())
    with pytest.raises(ValueError, match="different parameters"):
        ema.update(nn.Linear(2, 2), step=0)
