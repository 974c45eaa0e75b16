"""Phase 2 schedules (training/schedulers.py): lambda(t), EMA decay, cosine learning rate."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

from training.schedulers import LambdaSchedule, cosine_lr_scheduler


def test_qar_lambda_at_spec_epochs():
    """QAR: 0 for 30 warm-up epochs, then linear to 0.01 over 40 epochs (docs/METHOD.md §4.3)."""
    qar = LambdaSchedule(0.0, 0.01, warmup=30, rampup=40)
    for epoch, expected in [
        (0, 0.0),
        (29, 0.0),
        (29.99, 0.0),
        (30, 0.0),
        (40, 0.0025),
        (50, 0.005),
        (69, 0.00975),
        (70, 0.01),
        (199, 0.01),
    ]:
        assert qar(epoch) == pytest.approx(expected, abs=1e-12), epoch


def test_baseline_lambda_at_spec_epochs_with_fractional_epochs():
    """PL-QW and every baseline: 0 for 15 epochs, linear to 0.25 over 30 epochs."""
    base = LambdaSchedule(0.0, 0.25, warmup=15, rampup=30)
    assert base(14.5) == 0.0 and base(15) == 0.0
    assert base(30) == pytest.approx(0.125) and base(45) == pytest.approx(0.25)
    # Within an epoch (epoch + iteration / iterations_per_epoch): 3 of 4 steps into epoch 20.
    assert base(20 + 3 / 4) == pytest.approx(0.25 * 5.75 / 30)
    assert base.progress(30) == pytest.approx(0.5) and base.progress(100) == 1.0


def test_lambda_initial_value_sigmoid_shape_and_no_ramp():
    lam = LambdaSchedule(0.1, 0.5, warmup=2, rampup=10, shape="sigmoid")
    assert lam(0) == pytest.approx(0.1) and lam(1.9) == pytest.approx(0.1)
    # exp(-5 (1 - t)^2): t = 0.5 -> exp(-1.25); t = 1 -> 1
    assert lam(7) == pytest.approx(0.1 + 0.4 * math.exp(-1.25))
    assert lam(2) == pytest.approx(0.1 + 0.4 * math.exp(-5))
    assert lam(12) == pytest.approx(0.5) and lam(500) == pytest.approx(0.5)
    step = LambdaSchedule(0.0, 1.0, warmup=3, rampup=0)
    assert step(2.99) == 0.0 and step(3) == 1.0
    with pytest.raises(ValueError, match="shape"):
        LambdaSchedule(0, 1, 0, 1, shape="cosine")
    with pytest.raises(ValueError, match=">= 0"):
        LambdaSchedule(0, 1, -1, 1)


def _lrs(step_with_epoch: bool, epochs: int = 10) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = cosine_lr_scheduler(opt, epochs=epochs, eta_min=1e-6)
    lrs = []
    for epoch in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()  # the epoch's training
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch deprecates step(epoch)
            sched.step(epoch) if step_with_epoch else sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_cosine_lr_no_off_by_one():
    """Stepped once after each epoch, epoch 0 runs at the peak and epoch 1 lower
    (docs/METHOD.md §4.2); `scheduler.step(epoch)` would run epochs 0 and 1 both at it."""
    ours = _lrs(step_with_epoch=False)
    assert ours[0] == pytest.approx(1e-4) and ours[1] < ours[0]
    assert all(a > b for a, b in itertools.pairwise(ours))
    expected_1 = 1e-6 + (1e-4 - 1e-6) * (1 + math.cos(math.pi / 10)) / 2
    assert ours[1] == pytest.approx(expected_1)
    assert ours[10] == pytest.approx(1e-6)  # after the last epoch: eta_min
    release = _lrs(step_with_epoch=True)
    assert release[0] == release[1] == pytest.approx(1e-4)
    assert release[2] == pytest.approx(ours[1])  # every epoch one behind
    with pytest.raises(ValueError, match="epochs"):
        cosine_lr_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1), 0)
