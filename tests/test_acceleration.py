"""Mixed precision's automatic choice and torch.compile (--compile): compiled runs train,
write checkpoints an uncompiled network loads, and give g_phi's QAR gradient unchanged."""

from __future__ import annotations

import pytest
import torch

from models.quality_predictor import load_quality_predictor
from models.seg_models import create_seg_model
from tests.conftest import torchrun, write_tiny_gphi
from tests.test_train_mq import train_args
from tests.test_train_semisup import ssl_args
from training import precision, train_mq, train_semisup
from training.acceleration import compile_enabled, maybe_compile
from training.methods.quality import QualityScorer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_fp16_on_cuda_and_bf16_only_on_a_cpu_that_has_it(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.autocast_dtype("auto", CUDA) == torch.float16
    assert precision.autocast_dtype("auto", CPU) == (torch.bfloat16 if native else None)
    assert precision.autocast_dtype("auto", torch.device("mps")) is None
    # explicit settings are obeyed whatever the CPU; fp16 autocast is CUDA's alone
    assert precision.autocast_dtype("bf16", CPU) == torch.bfloat16
    assert precision.autocast_dtype("fp16", CPU) is None
    assert precision.autocast_dtype("no", CUDA) is None
    with pytest.raises(ValueError, match="--mixed_precision must be one of"):
        precision.autocast_dtype("fp8", CPU)


def test_compile_auto_is_on_for_cuda_only():
    assert compile_enabled("auto", CUDA) and not compile_enabled("auto", CPU)
    assert compile_enabled("on", CPU) and not compile_enabled("off", CUDA)
    with pytest.raises(ValueError, match="--compile must be one of"):
        compile_enabled("yes", CPU)
    net = torch.nn.Conv2d(1, 1, 1)
    assert maybe_compile(net, "auto", CPU, "net") is net


def test_a_platform_without_torch_compile_runs_eagerly_with_a_notice(monkeypatch, capsys):
    def unavailable(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unavailable)
    net = torch.nn.Conv2d(1, 1, 1)
    assert maybe_compile(net, "on", CPU, "g_phi") is net
    assert "torch.compile is unavailable for g_phi" in capsys.readouterr().out


@pytest.mark.slow
def test_compiled_frozen_g_phi_gives_qar_the_eager_gradient(tmp_path):
    """QAR backpropagates through g_phi: compiled, the score and its gradient with respect
    to the soft mask match the eager ones."""
    ckpt = write_tiny_gphi(tmp_path, 32)
    eager = QualityScorer(ckpt, CPU, 32)
    compiled = QualityScorer(ckpt, CPU, 32, compile="on")
    assert eager.compiled is None
    assert compiled.compiled is not None and compiled.compiled is not compiled.model
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 32, 32, generator=g)
    grads = []
    for scorer in (eager, compiled):
        soft = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
        soft.requires_grad_(True)
        q = scorer(images, soft, grad=True)
        q.sum().backward()
        grads.append((q.detach(), soft.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-3, atol=1e-6)


def _bare_keys(state: dict) -> None:
    wrapped = [k for k in state if "_orig_mod" in k or k.startswith("module.")]
    assert state and not wrapped, wrapped[:3]


@pytest.mark.slow
def test_compiled_phase_2_run_with_ema_teacher_writes_bare_checkpoints(tiny_demo, tmp_path):
    """PL-QW compiled (student and frozen g_phi): checkpoints carry the bare networks' keys,
    best.pth loads into an uncompiled network, and the EMA teacher is saved beside them."""
    gphi = write_tiny_gphi(tmp_path, 64)
    extra = ("--compile", "on", "--mq_checkpoint", str(gphi), "--keep_latest")
    run = train_semisup.main(ssl_args(tiny_demo, tmp_path, "ours_pl_qw", *extra, name="c"))
    best = torch.load(run / "best.pth", map_location="cpu", weights_only=False)
    _bare_keys(best["model"])
    latest = torch.load(run / "latest.pth", map_location="cpu", weights_only=False)
    for sd in [
        *latest["components"]["method"]["networks"],
        latest["components"]["method"]["teacher"],
    ]:
        _bare_keys(sd)
    args, _ = train_semisup.parse_args(ssl_args(tiny_demo, tmp_path, "ours_pl_qw"))
    net = create_seg_model(args.seg_model, **train_semisup.seg_model_kwargs(args))
    net.load_state_dict(best["model"])  # strict


@pytest.mark.slow
def test_compiled_g_phi_training_writes_a_bare_checkpoint(tiny_demo, tmp_path):
    run = train_mq.main(train_args(tiny_demo, tmp_path, "c", "--compile", "on", "--epochs", "1"))
    _, ckpt = load_quality_predictor(run / "best.pth")  # strict load into a bare g_phi
    _bare_keys(ckpt["state_dict"])


@pytest.mark.slow
def test_compiled_mean_teacher_under_ddp_trains_and_writes_bare_checkpoints(tiny_demo, tmp_path):
    """torchrun with 2 gloo processes and --compile on (torch.compile over DDP): both ranks
    finish, and the student and its EMA teacher are saved under the bare networks' keys."""
    extra = ("--compile", "on", "--keep_latest", "--epochs", "1")
    proc = torchrun(
        "training/train_semisup.py", ssl_args(tiny_demo, tmp_path, "mean_teacher", *extra, name="d")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "f_theta unetpp: torch.compile on" in proc.stdout
    latest = torch.load(tmp_path / "d" / "latest.pth", map_location="cpu", weights_only=False)
    method = latest["components"]["method"]
    for sd in [*method["networks"], method["teacher"]]:
        _bare_keys(sd)
    best = torch.load(tmp_path / "d" / "best.pth", map_location="cpu", weights_only=False)
    _bare_keys(best["model"])
