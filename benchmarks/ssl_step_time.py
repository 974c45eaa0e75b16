"""Benchmark one training step of every SSL method against its floor, and peak memory.

    python -m benchmarks.ssl_step_time                       # CPU, U-Net++ R18 at 64 px
    python -m benchmarks.ssl_step_time --device cuda --image_size 224 --batch_l 32 --batch_u 64 \
        --encoder resnet34 --mixed_precision fp16

A method's step (forward, losses, backward, unscale/clip, optimiser step, EMA update) is
timed against its floor: the bare forward/backward passes of the networks that the method
must run on the same batch, plus the optimiser step every method pays:

- the student: forward + backward on the labeled batch (SUP) or labeled + unlabeled;
- CPS: two students;
- the EMA teacher: forward on the unlabeled batch (UA-MT: its target pass plus the 8
  noisy uncertainty passes, as in Yu et al.'s code);
- g_phi: forward on the unlabeled batch (once per direction for CPS-QW), plus the
  backward to its input for QAR;
- FixMatch / UniMatch: forward + backward on each strong view of the unlabeled batch;
  UniMatch's weak-view forward also decodes the feature-perturbed stream.

The ratio step / floor is the method's overhead (target: within 1.15 on a CPU). Peak
memory is the CUDA allocator's peak on a GPU, the resident-set peak on a Linux CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import torch

from data.vqm_generator import VQMConfig
from models.quality_predictor import QualityPredictor, QualityPredictorConfig, quality_checkpoint
from models.seg_models import create_seg_model
from training.methods.base import METHODS, Batch, FeatureNet, StepInfo, get_method
from training.methods.quality import QualityScorer
from training.precision import autocast, autocast_dtype, clip_and_step, make_grad_scaler


@dataclass(frozen=True)
class Floor:
    """The network passes a method cannot avoid."""

    unlabeled: bool = True  # the student also sees the unlabeled batch
    networks: int = 1
    teacher_passes: int = 0
    gphi_forwards: int = 0
    gphi_backward: bool = False
    strong_passes: int = 0  # student forward + backward on strong views of x_u
    perturbed: bool = False  # UniMatch: the weak forward also decodes the perturbed stream


FLOORS: dict[str, Floor] = {
    "supervised": Floor(unlabeled=False),
    "pseudo_label": Floor(teacher_passes=1),
    "pseudo_label_sample_reweighting": Floor(teacher_passes=1),
    "mean_teacher": Floor(teacher_passes=1),
    "ua_mt": Floor(teacher_passes=9),
    "mean_teacher_quality": Floor(teacher_passes=1, gphi_forwards=1),
    "ict": Floor(teacher_passes=1),
    "ict_quality": Floor(teacher_passes=1, gphi_forwards=1),
    "cps": Floor(networks=2),
    "cps_quality_weighted": Floor(networks=2, gphi_forwards=2),
    "contrastive": Floor(teacher_passes=1),
    "contrastive_quality": Floor(teacher_passes=1, gphi_forwards=1),
    "fixmatch": Floor(strong_passes=1),
    "fixmatch_quality": Floor(strong_passes=1, gphi_forwards=1),
    "unimatch": Floor(strong_passes=2, perturbed=True),
    "unimatch_quality": Floor(strong_passes=2, perturbed=True, gphi_forwards=1),
    "unimatch_qar": Floor(strong_passes=2, perturbed=True, gphi_backward=True),
    "ours_qar": Floor(gphi_forwards=1, gphi_backward=True),
    "ours_pl_qw": Floor(teacher_passes=1, gphi_forwards=1),
}


def peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    elif sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets the RSS high-water mark


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_method(cls, network, scorer, data, device, amp, warmup: int, iters: int):
    """(step seconds, floor seconds, peak MiB) of one method on a fixed batch."""
    x_l, y_l, x_u = data
    size = x_l.shape[-1]
    floor = FLOORS[cls.name]
    parser = argparse.ArgumentParser()
    parser.add_argument("--ema_decay", type=float, default=0.999)
    parser.add_argument("--ema_initial_decay", type=float, default=0.5)
    parser.add_argument("--ema_warmup_steps", type=int, default=1000)
    cls.add_arguments(parser)
    nets = [network() for _ in range(cls.num_networks)]
    method = cls(parser.parse_args([]), nets, scorer if cls.uses_quality else None)
    params = [q for n in nets for q in n.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4)
    scaler = make_grad_scaler(device, amp)
    box = torch.zeros(len(x_u), 1, size, size, device=device)
    box[::2, :, : size // 2, : size // 2] = 1.0
    views = tuple(x_u.flip(-1) for _ in range(cls.strong_views))
    batch = Batch(x_l, y_l, x_u if cls.needs_unlabeled else None, views, (box,) * len(views))
    info = StepInfo(step=0, epoch=50.0, lam=0.25, ramp=1.0)
    counter = [0]
    teacher = nets[0].net

    def step() -> None:
        with autocast(device, amp):
            loss, _ = method.train_step(batch, info)
        clip_and_step(loss, opt, scaler, params, 1.0)
        method.after_step(counter[0])
        counter[0] += 1

    def floor_step() -> None:
        with autocast(device, amp):
            x = torch.cat([x_l, x_u]) if floor.unlabeled else x_l
            if floor.perturbed:
                loss = sum(sum(o.float().mean() for o in net(x, perturb=len(x_l))) for net in nets)
            else:
                loss = sum(net(x).float().mean() for net in nets)
            for view in views:
                loss = loss + nets[0](view).float().mean()
            with torch.no_grad():
                for _ in range(floor.teacher_passes):
                    teacher(x_u)
            for _ in range(floor.gphi_forwards):
                scorer(x_u, torch.rand(len(x_u), 1, size, size, device=device))
            if floor.gphi_backward:
                soft = torch.rand(len(x_u), 1, size, size, device=device, requires_grad=True)
                loss = loss + scorer(x_u, soft, grad=True).mean()
        clip_and_step(loss, opt, scaler, params, 1.0)

    peak_memory_reset(device)
    t_step = timed(step, device, warmup, iters)
    peak = peak_memory_mib(device)
    return t_step, timed(floor_step, device, warmup, iters), peak


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="*", default=None, help="default: every method")
    p.add_argument("--seg_model", default="unetpp")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--decoder_channels", type=int, nargs="+", default=None)
    p.add_argument("--gphi_backbone", default="resnet18")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--batch_l", type=int, default=4)
    p.add_argument("--batch_u", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mixed_precision", default="no")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=6)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = autocast_dtype(args.mixed_precision, device)
    size = args.image_size
    torch.manual_seed(0)
    ckpt_dir = Path("/tmp") / "qgssl_bench"
    ckpt_dir.mkdir(exist_ok=True)
    gphi = QualityPredictor(QualityPredictorConfig(backbone=args.gphi_backbone))
    ckpt = ckpt_dir / f"gphi_{args.gphi_backbone}_{size}.pth"
    torch.save(quality_checkpoint(gphi, image_size=size, vqm_config=VQMConfig().to_dict()), ckpt)
    scorer = QualityScorer(ckpt, device, size)

    extra = {"decoder_channels": tuple(args.decoder_channels)} if args.decoder_channels else {}

    def network() -> torch.nn.Module:
        net = create_seg_model(
            args.seg_model, encoder=args.encoder, encoder_weights=None, image_size=size, **extra
        )
        return FeatureNet(net).to(device)

    g = torch.Generator().manual_seed(0)
    x_l = torch.randn(args.batch_l, 3, size, size, generator=g).to(device)
    y_l = (torch.rand(args.batch_l, 1, size, size, generator=g) > 0.5).float().to(device)
    x_u = torch.randn(args.batch_u, 3, size, size, generator=g).to(device)
    names = args.methods or list(FLOORS)
    print(
        f"{args.seg_model}/{args.encoder} at {size} px, batch {args.batch_l} labeled + "
        f"{args.batch_u} unlabeled, g_phi {args.gphi_backbone}, device {device}, "
        f"{args.threads} threads, median of {args.iters}"
    )
    print(f"{'method':40s} {'step ms':>8s} {'floor ms':>9s} {'ratio':>6s} {'peak MiB':>9s}")
    rows = {}
    for name in names:
        cls = get_method(name)
        t_step, t_floor, peak = bench_method(
            cls, network, scorer, (x_l, y_l, x_u), device, amp, args.warmup, args.iters
        )
        rows[cls.name] = (t_step, t_floor)
        label = f"{cls.name} ({cls.acronym})"
        print(
            f"{label:40s} {t_step * 1e3:8.1f} {t_floor * 1e3:9.1f} {t_step / t_floor:6.2f} "
            f"{peak:9.0f}",
            flush=True,
        )
    for ours in ("ours_qar", "ours_pl_qw"):
        if ours in rows:
            for base in ("supervised", "mean_teacher"):
                if base in rows:
                    print(
                        f"{METHODS[ours].acronym} / {METHODS[base].acronym} step time: "
                        f"{rows[ours][0] / rows[base][0]:.2f}x"
                    )


if __name__ == "__main__":
    main()
