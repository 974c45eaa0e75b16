"""Training throughput of g_phi and of every Phase 2 method in each precision and compiled.

    python -m benchmarks.training_speed                                  # CPU, demo sizes
    python -m benchmarks.training_speed --modes fp32 bf16 --methods supervised ours_qar
    python -m benchmarks.training_speed --device cuda --image_size 224 --gphi_batch 32 \
        --batch_l 32 --batch_u 64 --encoder resnet34 --modes fp32 fp16 bf16 compile

Prints g_phi training samples per second (forward, float32 loss, backward, AdamW) and each
method's training steps per second (`benchmarks.ssl_step_time`'s step on a fixed batch) in
every mode, with the speed-up over fp32, so that a user can choose --mixed_precision and
--compile for a device. `compile` is torch.compile with the device's automatic precision
(--mixed_precision auto); its first step, which compiles, is reported on its own. On a GPU
it also measures the data loaders, one worker each, against the model's need and prints
the --num_workers that keep the GPU fed. Compiling every method takes about a minute each
on a CPU: narrow --methods for a quick answer.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import torch

from benchmarks.seg_loader_throughput import batched_rate, synthetic_cache
from benchmarks.ssl_step_time import FLOORS, bench_method, sync, timed
from data.mq_dataset import MQDataset
from data.seg_datasets import LabeledSegDataset, UnlabeledSegDataset
from data.vqm_generator import VQMConfig
from models.quality_predictor import QualityPredictor, QualityPredictorConfig, quality_checkpoint
from models.seg_models import create_seg_model
from training.acceleration import maybe_compile
from training.methods.base import FeatureNet, get_method
from training.methods.quality import QualityScorer
from training.precision import autocast, autocast_dtype, clip_and_step, make_grad_scaler

MODES = ("fp32", "bf16", "fp16", "compile")


def mode_settings(mode: str) -> tuple[str, str]:
    """(--mixed_precision, --compile) of a benchmark mode."""
    return {"fp32": ("no", "off"), "compile": ("auto", "on")}.get(mode, (mode, "off"))


def gphi_rate(args: argparse.Namespace, device: torch.device, mode: str) -> tuple[float, float]:
    """(samples/s, seconds of the first step) of g_phi's training step."""
    precision, compile_ = mode_settings(mode)
    amp = autocast_dtype(precision, device)
    torch.manual_seed(0)
    bare = QualityPredictor(QualityPredictorConfig(backbone=args.gphi_backbone)).to(device)
    bare = bare.to(memory_format=torch.channels_last)
    model = maybe_compile(bare, compile_, device, "g_phi")
    opt = torch.optim.AdamW(bare.parameters(), lr=3e-4)
    scaler = make_grad_scaler(device, amp)
    size, n = args.gphi_size, args.gphi_batch
    x = torch.randn(n, 4, size, size, device=device).contiguous(memory_format=torch.channels_last)
    target = torch.rand(n, device=device)

    def step() -> None:
        with autocast(device, amp):
            pred = model(x)
        loss = torch.nn.functional.smooth_l1_loss(pred.float(), target)
        clip_and_step(loss, opt, scaler, bare.parameters(), 1.0)

    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    return n / timed(step, device, args.warmup, args.iters), first


def method_rates(args: argparse.Namespace, device: torch.device, mode: str) -> dict[str, float]:
    """Steps per second of each method's training step in one mode."""
    precision, compile_ = mode_settings(mode)
    amp = autocast_dtype(precision, device)
    size = args.image_size
    ckpt = Path(args.scratch) / f"gphi_{args.gphi_backbone}_{size}.pth"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    gphi = QualityPredictor(QualityPredictorConfig(backbone=args.gphi_backbone))
    torch.save(quality_checkpoint(gphi, image_size=size, vqm_config=VQMConfig().to_dict()), ckpt)
    scorer = QualityScorer(ckpt, device, size, compile=compile_)
    extra = {"decoder_channels": tuple(args.decoder_channels)} if args.decoder_channels else {}

    def network() -> torch.nn.Module:
        net = create_seg_model(
            args.seg_model, encoder=args.encoder, encoder_weights=None, image_size=size, **extra
        )
        net = FeatureNet(net).to(device, memory_format=torch.channels_last)
        return maybe_compile(net, compile_, device, "f_theta")

    g = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x_l = torch.randn(args.batch_l, 3, size, size, generator=g).to(device, memory_format=cl)
    y_l = (torch.rand(args.batch_l, 1, size, size, generator=g) > 0.5).float().to(device)
    x_u = torch.randn(args.batch_u, 3, size, size, generator=g).to(device, memory_format=cl)
    rates = {}
    for name in args.methods or list(FLOORS):
        cls = get_method(name)
        t_step, _, _ = bench_method(
            cls, network, scorer, (x_l, y_l, x_u), device, amp, args.warmup, args.iters
        )
        rates[name] = 1.0 / t_step
        print(f"  {mode:8s} {cls.acronym:12s} {rates[name]:8.2f} steps/s", flush=True)
    return rates


def loader_report(args: argparse.Namespace, gphi_need: float, step_need: float) -> None:
    """One worker's items/s for each training set against the model's need (GPU runs)."""
    torch.set_num_threads(1)
    images, masks = synthetic_cache(256, args.image_size)
    views = {
        "g_phi VQM samples": (
            MQDataset(images, masks, samples_per_image=50, train=True),
            gphi_need,
        ),
        "Phase 2 labeled view": (
            LabeledSegDataset.from_arrays(images, masks, augment=True),
            step_need * args.batch_l,
        ),
        "Phase 2 unlabeled weak + 2 strong views": (
            UnlabeledSegDataset.from_arrays(images, augment=True, strong_views=2),
            step_need * args.batch_u,
        ),
    }
    print("\nloaders, one worker each, against the fastest mode's need:")
    for name, (ds, need) in views.items():
        per_worker = batched_rate(ds, 32, 20)
        workers = math.ceil(need / per_worker)
        print(
            f"  {name:42s} {per_worker:8,.0f} items/s per worker; the model takes "
            f"{need:8,.0f}/s: --num_workers >= {workers}"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--modes", nargs="+", choices=MODES, default=None, help="default: the device's")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--gphi_backbone", default="resnet18")
    p.add_argument("--gphi_size", type=int, default=128)
    p.add_argument("--gphi_batch", type=int, default=32)
    p.add_argument("--methods", nargs="*", default=None, help="default: every method")
    p.add_argument("--seg_model", default="unetpp")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--decoder_channels", type=int, nargs="+", default=[64, 32, 16, 16, 16])
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--batch_l", type=int, default=8)
    p.add_argument("--batch_u", type=int, default=16)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--scratch", default="/tmp/qgssl_bench")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    modes = args.modes or (
        ["fp32", "fp16", "bf16", "compile"] if device.type == "cuda" else ["fp32", "bf16"]
    )
    print(
        f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}; "
        f"g_phi {args.gphi_backbone} at {args.gphi_size} px, batch {args.gphi_batch}; "
        f"f_theta {args.seg_model}/{args.encoder} at {args.image_size} px, batch "
        f"{args.batch_l} + {args.batch_u}; median of {args.iters} steps"
    )
    print("\ng_phi training:")
    gphi = {}
    for mode in modes:
        gphi[mode], first = gphi_rate(args, device, mode)
        print(f"  {mode:8s} {gphi[mode]:8.1f} samples/s (first step {first:.1f} s)", flush=True)

    print("\nPhase 2 training steps:")
    rates = {mode: method_rates(args, device, mode) for mode in modes}
    base = "fp32" if "fp32" in modes else modes[0]

    def cells(values: dict[str, float]) -> str:
        return "".join(f"{values[m]:9.2f} ({values[m] / values[base]:.2f}x)" for m in modes)

    print(f"\n{'':14s}" + "".join(f"{m:>16s}" for m in modes))
    print(f"{'g_phi samples':14s}{cells(gphi)}")
    for name in rates[base]:
        print(f"{get_method(name).acronym:14s}{cells({m: rates[m][name] for m in modes})}")
    if device.type == "cuda":
        step_need = max(r for mode in modes for r in rates[mode].values())
        loader_report(args, max(gphi.values()), step_need)


if __name__ == "__main__":
    main()
