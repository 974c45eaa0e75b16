"""Train the quality predictor g_phi on Variable Quality Masks (docs/METHOD.md §2-§3).

    python training/train_mq.py --train_csv train.csv --val_csv val.csv \
        --experiment_name mq_PH2 --output_dir ./checkpoints/mq
    torchrun --nproc_per_node 4 training/train_mq.py ...      # several GPUs (DDP)

Defaults are the paper's (§3.3): resnet18.a1_in1k (ImageNet weights), AdamW lr 3e-4 / wd
5e-4, batch 32, 150 epochs, K = 50 VQMs per image per epoch (5 fixed ones per validation
image), SmoothL1 loss, cosine annealing with warm restarts (T0 10, T_mult 2, eta_min 1e-6)
stepped per epoch, fp16 autocast on CUDA (bf16 on a CPU that has it), gradients clipped to
norm 1.0 after unscaling, early stop on validation loss with patience 25. The run folder
(OUTPUT_DIR/EXPERIMENT_NAME) receives args.json, summary.csv, best.pth (lowest validation
loss; a self-describing g_phi checkpoint, also written as best_model.pth, the release's name)
and latest.pth (--resume).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import numpy as np
import torch

from data.io import DataError, load_labeled_csv
from data.mq_dataset import MQDataset, quality_input
from data.vqm_generator import CATEGORIES, PAPER_CATEGORY_PROBS, VQMConfig
from data.weak_model_corruption import read_manifest
from models.quality_predictor import (
    PAPER_BACKBONES,
    QualityPredictor,
    QualityPredictorConfig,
    quality_checkpoint,
)
from training.acceleration import add_speed_arguments, maybe_compile
from training.cli import TRACKING_REASON, add_bool, add_ignored
from training.distributed import (
    DistContext,
    barrier,
    gather_by_index,
    init_distributed,
    wrap_ddp,
)
from training.engine import (
    EarlyStopping,
    Run,
    check_loss_finite,
    run_main,
    seed_everything,
)
from training.loaders import prime_persistent, progress, sharded_loader
from training.precision import (
    autocast,
    autocast_dtype,
    clip_and_step,
    make_grad_scaler,
)
from training.quality_metrics import regression_metrics

LOSSES = {
    # beta 1: with targets in [0, 1] SmoothL1 equals 0.5 * MSE.
    "smoothl1": lambda: torch.nn.SmoothL1Loss(beta=1.0),
    "mse": lambda: torch.nn.MSELoss(),
}
SCHEDULERS = ("cosine", "onecycle")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train g_phi (image, mask) -> Dice on Variable Quality Masks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--train_csv", required=True, help="labeled split CSV (image_path,mask_path)")
    d.add_argument("--val_csv", required=True, help="validation split CSV")
    d.add_argument(
        "--test_csv",
        default=None,
        help="test split CSV: checked before training and recorded in the checkpoint, where "
        "test_mq.py finds it (training never reads its images)",
    )
    d.add_argument("--dataset", default="", help="data set name, recorded in the checkpoint")
    d.add_argument("--image_size", type=int, default=224)
    d.add_argument("--samples_per_image", type=int, default=50, help="K: VQMs per image per epoch")
    d.add_argument(
        "--samples_per_image_val", type=int, default=5, help="fixed VQMs per validation image"
    )
    d.add_argument("--num_workers", type=int, default=4)
    d.add_argument("--cache_threads", type=int, default=4, help="threads decoding the image cache")

    v = p.add_argument_group("VQM corruption mix (docs/METHOD.md §2.1; must sum to 1)")
    for c in CATEGORIES:
        v.add_argument(f"--{c}_prob", type=float, default=PAPER_CATEGORY_PROBS[c])
    add_bool(
        v,
        "--scale_corruptions",
        default=True,
        help="scale pixel sizes of the corruptions with the image size (224 = paper)",
    )
    add_bool(v, "--use_weak_models", default=False, help="p_weak of the samples from weak models")
    v.add_argument(
        "--weak_model_dir", default=None, help="folder written by training/train_weak_models.py"
    )
    v.add_argument(
        "--weak_checkpoint_paths",
        nargs="*",
        default=None,
        help="the release's form: every checkpoint of one weak-model folder (implies "
        "--use_weak_models true --weak_model_dir FOLDER)",
    )
    v.add_argument("--weak_model_prob", type=float, default=0.05, help="p_weak")

    m = p.add_argument_group("model")
    m.add_argument(
        "--backbone",
        default="resnet18.a1_in1k",
        help=f"any timm model; the paper's: {', '.join(PAPER_BACKBONES.values())}",
    )
    m.add_argument("--dropout", type=float, default=0.15)
    add_bool(m, "--pretrained", default=True, help="ImageNet weights (timm, or --pretrained_path)")
    m.add_argument("--pretrained_path", default=None, help="local weights file for the backbone")
    m.add_argument(
        "--init_quality",
        type=float,
        default=0.8,
        help="initial predicted quality (head bias = its logit)",
    )

    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=150)
    o.add_argument("--batch_size", type=int, default=32, help="per process")
    o.add_argument("--lr", type=float, default=3e-4)
    o.add_argument("--weight_decay", type=float, default=5e-4)
    o.add_argument("--loss_func", choices=sorted(LOSSES), default="smoothl1")
    o.add_argument("--scheduler", choices=SCHEDULERS, default="cosine")
    o.add_argument("--t0", type=int, default=10, help="cosine warm restarts: first period")
    o.add_argument("--t_mult", type=int, default=2, help="cosine warm restarts: period factor")
    o.add_argument("--eta_min", type=float, default=1e-6)
    o.add_argument("--grad_clip", type=float, default=1.0)
    add_speed_arguments(o)
    o.add_argument("--patience", type=int, default=25, help="early stop on validation loss")

    r = p.add_argument_group("run")
    r.add_argument("--output_dir", default="./checkpoints/mq")
    r.add_argument("--experiment_name", required=True)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--device", default="auto", help="auto, cpu, cuda")
    r.add_argument("--resume", action="store_true", help="continue the run from latest.pth")
    add_ignored(p, "--use_comet", TRACKING_REASON, takes_value=False)
    add_ignored(p, "--comet_project", TRACKING_REASON, takes_value=True)
    return p


def validate_args(args: argparse.Namespace) -> VQMConfig:
    """Fail on bad settings before any data is read."""
    probs = {c: getattr(args, f"{c}_prob") for c in CATEGORIES}
    try:
        config = VQMConfig(category_probs=probs, scale_with_size=args.scale_corruptions)
    except ValueError as exc:
        raise SystemExit(f"error: {exc} (set them with --<category>_prob)") from None
    for name in (
        "epochs",
        "batch_size",
        "image_size",
        "samples_per_image",
        "samples_per_image_val",
    ):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name} must be >= 1, got {getattr(args, name)}")
    if args.weak_checkpoint_paths:
        args.weak_model_dir = str(weak_folder_of(args.weak_checkpoint_paths))
        args.use_weak_models = True
    if args.use_weak_models and not args.weak_model_dir:
        raise SystemExit("error: --use_weak_models needs --weak_model_dir")
    if not args.use_weak_models:
        args.weak_model_prob = 0.0
    if args.test_csv:
        try:
            load_labeled_csv(args.test_csv)  # a wrong path fails now, not after training
        except DataError as exc:
            raise SystemExit(f"error: --test_csv: {exc}") from None
    return config


def weak_folder_of(paths: list[str]) -> Path:
    """The weak-model folder whose checkpoints `paths` lists (all of them, as the release's
    train_mq.sh passes them)."""
    folders = {Path(p).resolve().parent for p in paths}
    if len(folders) != 1:
        raise SystemExit(f"error: --weak_checkpoint_paths spans several folders: {sorted(folders)}")
    folder = folders.pop()
    try:
        listed = set(read_manifest(folder)["checkpoints"])
    except FileNotFoundError as exc:
        raise SystemExit(f"error: --weak_checkpoint_paths: {exc}") from None
    given = {Path(p).name for p in paths}
    if given != listed:
        raise SystemExit(
            f"error: --weak_checkpoint_paths names {sorted(given)}, but {folder} holds "
            f"{sorted(listed)}; pass all of them, or --weak_model_dir {folder}"
        )
    return folder


def link_release_name(run_dir: Path) -> None:
    """best_model.pth, the file the release's test_mq.sh and MQ_CHECKPOINT name, is a link
    to best.pth (where links cannot be made, pass best.pth)."""
    alias = run_dir / "best_model.pth"
    if not alias.is_symlink():
        with contextlib.suppress(OSError):
            alias.symlink_to("best.pth")


def build_scheduler(args, optimizer, steps_per_epoch: int):
    """(scheduler, per_batch): warm-restart cosine stepped per epoch, or one-cycle per batch."""
    if args.scheduler == "cosine":
        return (
            torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=args.t0, T_mult=args.t_mult, eta_min=args.eta_min
            ),
            False,
        )
    return (
        torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch
        ),
        True,
    )


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    ctx: DistContext,
    amp_dtype: torch.dtype | None,
    desc: str = "validate",
) -> dict[str, np.ndarray]:
    """g_phi's predictions on a fixed VQM set, gathered from every rank (duplicates from
    the sampler's padding removed). Arrays: pred, true, category, sample (sampler index)."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"pred": [], "true": [], "category": [], "sample": []}
    for batch in progress(loader, desc=desc, enabled=ctx.is_main):
        x = quality_input(
            batch["image"].to(ctx.device, non_blocking=True),
            batch["mask"].to(ctx.device, non_blocking=True),
        ).contiguous(memory_format=torch.channels_last)
        with autocast(ctx.device, amp_dtype):
            pred = model(x)
        parts["pred"].append(pred.float().cpu().numpy())
        parts["true"].append(batch["quality"].numpy())
        parts["category"].append(np.asarray(batch["category"]))
        parts["sample"].append(np.asarray(batch["sample"]))
    model.train(was_training)
    local = {k: np.concatenate(v) for k, v in parts.items() if v}
    merged = gather_by_index({**local, "index": local["sample"]} if local else {})
    return merged


def train(args: argparse.Namespace, ctx: DistContext) -> Path:
    vqm_config = validate_args(args)
    run = Run(ctx, args.output_dir, args.experiment_name, args.resume)
    seed_everything(args.seed)
    shared = {"seed": args.seed, "vqm_config": vqm_config, "num_threads": args.cache_threads}
    train_set = MQDataset.for_training(
        args.train_csv,
        args.image_size,
        args.samples_per_image,
        weak_model_dir=args.weak_model_dir,
        weak_prob=args.weak_model_prob,
        weak_device=ctx.device,
        **shared,
    )
    val_set = MQDataset.for_evaluation(
        args.val_csv, args.image_size, args.samples_per_image_val, **shared
    )
    loader_args = (args.batch_size, args.num_workers, ctx)
    train_loader, train_sampler = sharded_loader(train_set, *loader_args, True, args.seed)
    val_loader, _ = sharded_loader(val_set, *loader_args, shuffle=False)

    model_config = QualityPredictorConfig(
        backbone=args.backbone, dropout=args.dropout, init_quality=args.init_quality
    )
    bare = QualityPredictor(model_config, args.pretrained, args.pretrained_path).to(ctx.device)
    # Channels-last on every device: tensor cores on CUDA, oneDNN's convolutions on a CPU
    # (ResNet18 training step at 128 px 1.14x faster in bf16, 1.23x in float32).
    bare = bare.to(memory_format=torch.channels_last)
    model = maybe_compile(wrap_ddp(bare, ctx), args.compile, ctx.device, f"g_phi {args.backbone}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler, per_batch = build_scheduler(args, optimizer, len(train_loader))
    amp_dtype = autocast_dtype(args.mixed_precision, ctx.device)
    scaler = make_grad_scaler(ctx.device, amp_dtype)
    loss_fn = LOSSES[args.loss_func]()
    stopper = EarlyStopping(args.patience, mode="min")
    components = {"model": bare, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    point = run.resume(stopper, **components)
    if point is not None:
        prime_persistent(train_loader, val_loader)
    run.restore_rng(point)

    settings = {
        "image_size": args.image_size,
        "vqm_config": vqm_config.to_dict(),
        "dataset": args.dataset,
        "train_csv": str(args.train_csv),
        "val_csv": str(args.val_csv),
        "test_csv": str(args.test_csv) if args.test_csv else None,
        "samples_per_image_val": args.samples_per_image_val,
        "seed": args.seed,
        "weak_model_prob": args.weak_model_prob,
    }
    run.write_record(args, train_images=len(train_set.images), val_images=len(val_set.images))
    run.log(
        f"g_phi {args.backbone}: {len(train_set.images)} train images x "
        f"K={args.samples_per_image} = {len(train_set)} samples/epoch; "
        f"{len(val_set)} fixed validation VQMs; "
        f"device {ctx.device} x {ctx.world_size}; run folder {run.dir}"
    )
    for epoch in run.epochs(point, 0, args.epochs):
        train_sampler.set_epoch(epoch)
        model.train()
        total, count, abs_err = 0.0, 0, 0.0
        lr = optimizer.param_groups[0]["lr"]
        bar = progress(train_loader, desc=f"epoch {epoch + 1}/{args.epochs}", enabled=ctx.is_main)
        for step, batch in enumerate(bar):
            x = quality_input(
                batch["image"].to(ctx.device, non_blocking=True),
                batch["mask"].to(ctx.device, non_blocking=True),
            )
            x = x.contiguous(memory_format=torch.channels_last)
            target = batch["quality"].to(ctx.device, non_blocking=True)
            with autocast(ctx.device, amp_dtype):
                pred = model(x)
            loss = loss_fn(pred.float(), target)
            check_loss_finite(loss, {"quality_loss": loss}, epoch, step, ctx)
            clip_and_step(loss, optimizer, scaler, model.parameters(), args.grad_clip)
            if per_batch:
                scheduler.step()
            n = len(target)
            total += loss.item() * n
            abs_err += float((pred.detach().float() - target).abs().sum())
            count += n
            bar.set_postfix(
                loss=f"{total / count:.4f}", mae=f"{abs_err / count:.3f}", refresh=False
            )
        if not per_batch:
            scheduler.step()  # after the epoch: epoch 0 runs at the initial LR, then it decays

        val = predict(model, val_loader, ctx, amp_dtype)
        val_loss = float(loss_fn(torch.from_numpy(val["pred"]), torch.from_numpy(val["true"])))
        vm = regression_metrics(val["pred"], val["true"])
        train_loss = total / max(1, count)
        stopper.update(val_loss, epoch)
        val_metrics = {"loss": val_loss, **{k: float(vm[k]) for k in ("mae", "mse", "pearson")}}
        run.end_epoch(
            epoch,
            {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "train_mae": abs_err / max(1, count),
                "val_loss": val_loss,
                "val_mae": vm["mae"],
                "val_mse": vm["mse"],
                "val_pearson": vm["pearson"],
                "val_spearman": vm["spearman"],
                "val_mean_pred": vm["mean_pred"],
                "best_epoch": stopper.best_epoch,
            },
            stopper,
            best=partial(
                quality_checkpoint, bare, **settings, epoch=epoch, val_metrics=val_metrics
            ),
            line=f"train loss {train_loss:.4f} | val loss {val_loss:.4f} MAE {vm['mae']:.4f} "
            f"Pearson {vm['pearson']:.3f}",
            **components,
        )
        if ctx.is_main and run.best.exists():
            link_release_name(run.dir)
        if stopper.stop:
            break
    barrier(ctx)
    if ctx.is_main:
        print(
            f"best validation loss {stopper.best:.4f} at epoch {stopper.best_epoch + 1}; "
            f"g_phi checkpoint: {run.best}"
        )
    return run.dir


def main(argv: list[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    return run_main(lambda: train(args, init_distributed(args.device)))


if __name__ == "__main__":
    main()
