"""Train the quality predictor g_phi on Variable Quality Masks (SPEC.md Phase 1).

    python -m training.train_mq --train_csv train.csv --val_csv val.csv \
        --experiment_name mq_PH2 --output_dir ./checkpoints/mq
    torchrun --nproc_per_node 4 -m training.train_mq ...      # several GPUs (DDP)

SPEC.md defaults: resnet18.a1_in1k (ImageNet weights), AdamW lr 3e-4 / wd 5e-4, batch 32,
150 epochs, K = 50 VQMs per image per epoch (5 fixed ones per validation image),
SmoothL1 loss, cosine annealing with warm restarts (T0 10, T_mult 2, eta_min 1e-6) stepped
per epoch, fp16 autocast on CUDA, gradients clipped to norm 1.0 after unscaling, early stop
on validation loss with patience 25. The run folder (OUTPUT_DIR/EXPERIMENT_NAME) receives
args.json, summary.csv (one row per epoch), best.pth (lowest validation loss; a
self-describing g_phi checkpoint) and latest.pth (everything needed to --resume).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from data.io import DataError, load_labeled_csv
from data.mq_dataset import MQDataset, quality_input
from data.samplers import EpochSampler
from data.vqm_generator import CATEGORIES, PAPER_CATEGORY_PROBS, VQMConfig
from models.quality_predictor import (
    PAPER_BACKBONES,
    QualityPredictor,
    QualityPredictorConfig,
    quality_checkpoint,
)
from training.common import (
    MIXED_PRECISION_CHOICES,
    DistContext,
    NonFiniteLossError,
    SummaryCSV,
    all_gather_objects,
    atomic_save,
    autocast,
    autocast_dtype,
    barrier,
    broadcast_object,
    capture_rng_state,
    check_loss_finite,
    cleanup_distributed,
    clip_and_step,
    init_distributed,
    make_grad_scaler,
    make_loader,
    prepare_run_dir,
    progress,
    restore_rng_state,
    seed_everything,
    str2bool,
    truncate_summary,
    unwrap,
    write_run_record,
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

    v = p.add_argument_group("VQM corruption mix (SPEC.md; must sum to 1)")
    for c in CATEGORIES:
        v.add_argument(f"--{c}_prob", type=float, default=PAPER_CATEGORY_PROBS[c])
    v.add_argument(
        "--scale_corruptions",
        type=str2bool,
        default=True,
        help="scale pixel sizes of the corruptions with the image size (224 = paper)",
    )
    v.add_argument("--use_weak_models", type=str2bool, default=False)
    v.add_argument(
        "--weak_model_dir", default=None, help="folder written by data.weak_model_corruption"
    )
    v.add_argument("--weak_model_prob", type=float, default=0.05, help="p_weak")

    m = p.add_argument_group("model")
    m.add_argument(
        "--backbone",
        default="resnet18.a1_in1k",
        help=f"any timm model; the paper's: {', '.join(PAPER_BACKBONES.values())}",
    )
    m.add_argument("--dropout", type=float, default=0.15)
    m.add_argument(
        "--pretrained",
        type=str2bool,
        default=True,
        help="ImageNet weights (timm's source, or --pretrained_path)",
    )
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
    o.add_argument(
        "--mixed_precision",
        choices=MIXED_PRECISION_CHOICES,
        default="fp16",
        help="autocast dtype on CUDA (a CPU runs in full precision)",
    )
    o.add_argument("--patience", type=int, default=25, help="early stop on validation loss")

    r = p.add_argument_group("run")
    r.add_argument("--output_dir", default="./checkpoints/mq")
    r.add_argument("--experiment_name", required=True)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--device", default="auto", help="auto, cpu, cuda")
    r.add_argument("--resume", action="store_true", help="continue the run from latest.pth")
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
        )
        with autocast(ctx.device, amp_dtype):
            pred = model(x)
        parts["pred"].append(pred.float().cpu().numpy())
        parts["true"].append(batch["quality"].numpy())
        parts["category"].append(np.asarray(batch["category"]))
        parts["sample"].append(np.asarray(batch["sample"]))
    model.train(was_training)
    local = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    gathered = all_gather_objects(local, ctx)
    merged = {k: np.concatenate([g[k] for g in gathered]) for k in local}
    _, first = np.unique(merged["sample"], return_index=True)
    return {k: v[first] for k, v in merged.items()}


def train(args: argparse.Namespace, ctx: DistContext) -> Path:
    vqm_config = validate_args(args)
    run_dir = Path(args.output_dir) / args.experiment_name
    error = None
    if ctx.is_main:
        try:
            prepare_run_dir(args.output_dir, args.experiment_name, args.resume)
        except RuntimeError as exc:
            error = str(exc)
    error = broadcast_object(error, ctx)
    if error:
        raise SystemExit(f"error: {error}")

    seed_everything(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_set = MQDataset.for_training(
        args.train_csv,
        args.image_size,
        args.samples_per_image,
        seed=args.seed,
        vqm_config=vqm_config,
        weak_model_dir=args.weak_model_dir,
        weak_prob=args.weak_model_prob,
        weak_device=ctx.device,
        num_threads=args.cache_threads,
    )
    val_set = MQDataset.for_evaluation(
        args.val_csv,
        args.image_size,
        args.samples_per_image_val,
        seed=args.seed,
        vqm_config=vqm_config,
        num_threads=args.cache_threads,
    )
    train_sampler = EpochSampler(len(train_set), True, args.seed, ctx.rank, ctx.world_size)
    val_sampler = EpochSampler(len(val_set), False, args.seed, ctx.rank, ctx.world_size)
    train_loader = make_loader(
        train_set,
        train_sampler,
        args.batch_size,
        args.num_workers,
        ctx.device,
        drop_last=len(train_sampler) > args.batch_size,
    )
    val_loader = make_loader(val_set, val_sampler, args.batch_size, args.num_workers, ctx.device)

    model_config = QualityPredictorConfig(
        backbone=args.backbone, dropout=args.dropout, init_quality=args.init_quality
    )
    model = QualityPredictor(model_config, args.pretrained, args.pretrained_path).to(ctx.device)
    if ctx.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if ctx.distributed:
        model = DistributedDataParallel(
            model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler, per_batch = build_scheduler(args, optimizer, len(train_loader))
    amp_dtype = autocast_dtype(args.mixed_precision, ctx.device)
    scaler = make_grad_scaler(ctx.device, amp_dtype)
    loss_fn = LOSSES[args.loss_func]()

    start_epoch, best_val, best_epoch, bad_epochs = 0, math.inf, -1, 0
    if args.resume and (run_dir / "latest.pth").exists():
        state = torch.load(run_dir / "latest.pth", map_location=ctx.device, weights_only=False)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch = state["epoch"] + 1
        best_val, best_epoch, bad_epochs = (
            state["best_val"],
            state["best_epoch"],
            state["bad_epochs"],
        )
        restore_rng_state(state["rng"])
        if bad_epochs >= args.patience:
            start_epoch = args.epochs  # it had stopped early: train no further
        if ctx.is_main:
            truncate_summary(run_dir / "summary.csv", state["epoch"])
            print(f"resuming {run_dir} at epoch {start_epoch + 1}")

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
    summary = None
    if ctx.is_main:
        write_run_record(
            run_dir,
            vars(args),
            world_size=ctx.world_size,
            train_images=len(train_set.images),
            val_images=len(val_set.images),
        )
        summary = SummaryCSV(run_dir / "summary.csv")
        print(
            f"g_phi {args.backbone}: {len(train_set.images)} train images x "
            f"K={args.samples_per_image} = {len(train_set)} samples/epoch; "
            f"{len(val_set)} fixed validation VQMs; "
            f"device {ctx.device} x {ctx.world_size}; run folder {run_dir}",
            flush=True,
        )

    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
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
            if ctx.device.type == "cuda":
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
        improved = val_loss < best_val
        if improved:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
        else:
            bad_epochs += 1
        if ctx.is_main:
            ckpt = quality_checkpoint(
                unwrap(model),
                **settings,
                epoch=epoch,
                val_metrics={"loss": val_loss, **{k: vm[k] for k in ("mae", "mse", "pearson")}},
            )
            if improved:
                atomic_save(ckpt, run_dir / "best.pth")
            atomic_save(
                {
                    "model": unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch,
                    "best_val": best_val,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "rng": capture_rng_state(),
                    "g_phi": ckpt,
                },
                run_dir / "latest.pth",
            )
            summary.append(
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
                    "best_epoch": best_epoch,
                    "seconds": time.time() - t0,
                }
            )
            print(
                f"epoch {epoch + 1}/{args.epochs}: train loss {train_loss:.4f} | val loss "
                f"{val_loss:.4f} MAE {vm['mae']:.4f} Pearson {vm['pearson']:.3f}"
                f"{' *' if improved else ''} | {time.time() - t0:.0f}s",
                flush=True,
            )
        if bad_epochs >= args.patience:
            if ctx.is_main:
                print(
                    f"early stop: no validation improvement for {args.patience} epochs "
                    f"(best epoch {best_epoch + 1})"
                )
            break
    barrier(ctx)
    if ctx.is_main:
        print(
            f"best validation loss {best_val:.4f} at epoch {best_epoch + 1}; "
            f"g_phi checkpoint: {run_dir / 'best.pth'}"
        )
    return run_dir


def main(argv: list[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    ctx = init_distributed(args.device)
    try:
        return train(args, ctx)
    except (NonFiniteLossError, DataError, FileNotFoundError, ValueError) as exc:
        # Bad input or settings (named in the message), or a NaN loss: no traceback needed.
        raise SystemExit(f"error: {exc}") from None
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    main()
