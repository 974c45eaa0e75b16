"""Semi-supervised training of f_theta with any registered method (docs/METHOD.md §4-§7).

    python training/train_semisup.py --method ours_qar --seg_model unetpp \
        --labeled_train_csv train.csv --labeled_val_csv val.csv --labeled_test_csv test.csv \
        --unlabeled_csv train_subset_5k.csv --mq_checkpoint ./checkpoints/mq/mq_PH2/best.pth \
        --experiment_name QAR_PH2_UP --output_dir ./checkpoints/methods/PH2
    torchrun --nproc_per_node 4 training/train_semisup.py ...     # several GPUs (DDP)

The one loop of every method (§4.2): AdamW (lr 1e-4, wd 1e-4), cosine annealing over the
epochs (eta_min 1e-6) stepped after each epoch, fp16 autocast on CUDA, gradients unscaled
then clipped to norm 1.0, the method's lambda(t) schedule (§4.3), an epoch of
max(len(labeled loader), len(unlabeled loader)) iterations with the shorter loader cycling,
validation Dice each epoch, best-on-validation model selection, early stopping (patience
30), and a single test of the selected model at the end (§4.6).

The run folder (OUTPUT_DIR/EXPERIMENT_NAME) receives args.json, summary.csv (one row per
epoch: every loss term, lambda, mean predicted quality, fraction of samples kept by the
weight threshold, validation metrics), best.pth, latest.pth (for --resume) and
results.json (test mean +- std per metric). Method-specific flags belong to the method:
`python training/train_semisup.py --method ua_mt --help` lists them.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import torch
from torch.utils.data import DataLoader

from data.augment import normalize_tensor
from data.io import load_unlabeled_csv
from data.multitask import load_task_table
from data.samplers import EpochSampler
from data.seg_datasets import LabeledSegDataset, UnlabeledSegDataset
from models.seg_models import (
    SEG_MODEL_ARGUMENTS,
    SEG_MODELS,
    check_seg_model_args,
    create_seg_model,
    resolve_seg_model,
    seg_model_acronym,
)
from models.versemi import PromptedSegNet
from training.acceleration import add_speed_arguments, maybe_compile
from training.cli import TRACKING_REASON, add_ignored
from training.diagnostics import heldout_dataset, mechanism_diagnostics, plot_diagnostics
from training.distributed import (
    DistContext,
    barrier,
    init_distributed,
    reduce_mean,
    wrap_ddp,
)
from training.engine import (
    EarlyStopping,
    Run,
    check_loss_finite,
    load_checkpoint,
    plain,
    run_main,
    seed_everything,
    write_json,
)
from training.eval_utils import evaluate_segmentation, format_summary
from training.loaders import (
    BatchStream,
    prime_persistent,
    progress,
    sharded_loader,
    steps_per_epoch,
)
from training.methods import METHODS, Batch, FeatureNet, SSLMethod, StepInfo, get_method
from training.methods.quality import QualityScorer
from training.methods.versemi import TaskQuality
from training.metrics import summarize
from training.multitask import (
    build_multitask_data,
    evaluate_tasks,
    task_columns,
    task_eval_loaders,
    task_mean,
)
from training.precision import (
    autocast,
    autocast_dtype,
    clip_and_step,
    make_grad_scaler,
)
from training.schedulers import LambdaSchedule, cosine_lr_scheduler

SELECTION_METRIC = "dice"


def build_parser(method: type[SSLMethod] | None = None) -> argparse.ArgumentParser:
    """The loop's flags, plus the selected method's own (allow_abbrev off: the release's
    `--encoder` was silently taken as a prefix of another flag)."""
    p = argparse.ArgumentParser(
        description="Semi-supervised segmentation with QAR, PL-QW or a baseline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS) or 'see --help'}")
    d = p.add_argument_group("data")
    d.add_argument("--labeled_train_csv", default=None, help="D_L (image_path,mask_path)")
    d.add_argument("--labeled_val_csv", default=None)
    d.add_argument("--labeled_test_csv", default=None)
    d.add_argument("--unlabeled_csv", default=None, help="D_U (img_path); not needed by SUP")
    d.add_argument(
        "--task_table",
        default=None,
        help="multi-task methods (VerSemi, Pooled): a CSV or JSON table of data sets "
        "(name,labeled_csv,unlabeled_csv,val_csv,test_csv[,mq_checkpoint]) in place of "
        "the four CSVs above (docs/METHOD.md §11)",
    )
    d.add_argument("--dataset", default="", help="data set name, recorded in results.json")
    d.add_argument("--image_size", type=int, default=224)
    d.add_argument("--num_workers", type=int, default=4)
    d.add_argument("--cache_threads", type=int, default=4)

    m = p.add_argument_group("model")
    m.add_argument("--seg_model", default="unetpp", help=f"one of {list(SEG_MODELS)}")
    m.add_argument(
        "--encoder",
        "--seg_encoder",
        default="resnet34",
        help="smp encoder, or tu-<timm name> (U-Net++, Attention U-Net)",
    )
    m.add_argument(
        "--encoder_weights",
        default="imagenet",
        help="imagenet, none, or a local weights file (models/pretrained.py)",
    )
    m.add_argument(
        "--swin_pretrained_path",
        default=None,
        help="official swin_tiny_patch4_window7_224_22k.pth (Swin-UNet)",
    )
    m.add_argument(
        "--decoder_channels",
        type=int,
        nargs="+",
        default=None,
        help="CNN decoder widths (smp default 256 128 64 32 16)",
    )
    m.add_argument(
        "--swin_decoder_depths",
        type=int,
        nargs=4,
        default=None,
        help="Swin-UNet blocks per decoder level, 1/4 resolution first (default 2 2 2 2)",
    )
    m.add_argument("--mq_checkpoint", default=None, help="g_phi checkpoint (quality methods)")
    m.add_argument(
        "--mq_resize",
        action="store_true",
        help="resize inputs to g_phi's training size when it differs from --image_size",
    )

    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=200)
    o.add_argument("--batch_size_labeled", type=int, default=32, help="per process")
    o.add_argument("--batch_size_unlabeled", type=int, default=64, help="per process")
    o.add_argument("--lr", type=float, default=1e-4)
    o.add_argument("--weight_decay", type=float, default=1e-4)
    o.add_argument(
        "--betas",
        type=float,
        nargs=2,
        default=None,
        metavar=("BETA1", "BETA2"),
        help="AdamW's betas (default: the method's own; VerSemi's 0.5 0.999, else 0.9 0.999)",
    )
    o.add_argument("--eta_min", type=float, default=1e-6)
    o.add_argument("--grad_clip", type=float, default=1.0)
    add_speed_arguments(o)
    o.add_argument("--patience", type=int, default=30, help="early stop on validation Dice")
    o.add_argument(
        "--patience_from",
        choices=PATIENCE_FROM,
        default="ramp_end",
        help="count patience epochs from the end of the lambda warm-up + ramp (default, so "
        "that no run stops before its unsupervised term is on; docs/METHOD.md §4.6) or from "
        "the first epoch (the release's literal rule)",
    )
    lam = method.lambda_defaults if method else (None,) * 4
    o.add_argument("--lambda_initial", type=float, default=lam[0])
    o.add_argument("--lambda_final", type=float, default=lam[1])
    o.add_argument("--lambda_warmup", type=float, default=lam[2], help="epochs at lambda_initial")
    o.add_argument("--lambda_rampup", type=float, default=lam[3], help="epochs of the ramp")
    o.add_argument("--lambda_shape", choices=("linear", "sigmoid"), default="linear")
    o.add_argument("--ema_decay", type=float, default=0.999)
    o.add_argument("--ema_initial_decay", type=float, default=0.5)
    o.add_argument("--ema_warmup_steps", type=int, default=1000)

    r = p.add_argument_group("run")
    r.add_argument("--output_dir", default="./checkpoints/methods")
    r.add_argument(
        "--experiment_name",
        default=None,
        help="run folder name (default: ACRONYM_DATASET_MODEL_seedSEED)",
    )
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--device", default="auto")
    r.add_argument("--resume", action="store_true", help="continue the run from latest.pth")
    r.add_argument(
        "--keep_latest",
        action="store_true",
        help="keep latest.pth (optimiser, EMA, RNG state) after the run has finished; by "
        "default it is removed once results.json is written, as it only serves resuming",
    )
    add_ignored(p, "--use_comet", TRACKING_REASON, takes_value=False)
    add_ignored(p, "--comet_project", TRACKING_REASON, takes_value=True)
    if method is not None:
        method.add_arguments(p.add_argument_group(f"{method.name} ({method.acronym})"))
    return p


PATIENCE_FROM = ("ramp_end", "start")


def patience_start(args: argparse.Namespace) -> int:
    """First epoch whose lack of improvement counts towards --patience (§4.6)."""
    if args.patience_from == "start":
        return 0
    return math.ceil((args.lambda_warmup or 0.0) + (args.lambda_rampup or 0.0))


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, type[SSLMethod]]:
    """Two passes: find --method, then parse with that method's flags added."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--method")
    known, _ = pre.parse_known_args(argv)
    if known.method is None:
        build_parser().parse_args(argv)  # prints usage / help and exits
    try:
        method = get_method(known.method)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    args = build_parser(method).parse_args(argv)
    args.method = method.name
    return args, method


# The release's script passes these to every network; a network that does not take one
# ignores it (with a notice) instead of refusing it, as the release did.
SHARED_NETWORK_FLAGS = {"encoder": "--encoder", "swin_pretrained_path": "--swin_pretrained_path"}


def seg_model_kwargs(args: argparse.Namespace, notify: bool = False) -> dict[str, Any]:
    """The network's arguments from the flags; models.seg_models refuses any other one set
    for a model that does not take it (--decoder_channels for Swin-UNet, say)."""
    kwargs = {
        "encoder": args.encoder,
        "encoder_weights": args.encoder_weights,
        "image_size": args.image_size,
        "swin_pretrained_path": args.swin_pretrained_path,
        "decoder_channels": tuple(args.decoder_channels) if args.decoder_channels else None,
        "decoder_depths": tuple(args.swin_decoder_depths) if args.swin_decoder_depths else None,
    }
    spec = resolve_seg_model(args.seg_model)
    for arg, flag in SHARED_NETWORK_FLAGS.items():
        if arg in spec.arguments:
            continue
        given = kwargs.pop(arg) not in (None, SEG_MODEL_ARGUMENTS[arg])
        if given and notify:
            print(f"notice: {flag} is ignored: {spec.name} does not take it", file=sys.stderr)
    return kwargs


def validate(args: argparse.Namespace, method: type[SSLMethod]) -> None:
    """Everything that can be checked before data are read or networks built."""
    problems = []
    try:
        check_seg_model_args(args.seg_model, **seg_model_kwargs(args, notify=True))
    except ValueError as exc:
        problems.append(f"--seg_model {args.seg_model}: {exc}")
    if method.multitask:
        if not args.task_table:
            problems.append(f"{method.name} trains over several data sets: pass --task_table")
        given = [f for f in ("labeled_train_csv", "unlabeled_csv") if getattr(args, f)]
        if given:
            problems.append(f"{method.name} reads its data from --task_table, not --{given[0]}")
    else:
        if args.task_table:
            problems.append(f"--task_table is for multi-task methods; {method.name} is not one")
        for name in ("labeled_train_csv", "labeled_val_csv", "labeled_test_csv"):
            if not getattr(args, name):
                problems.append(f"--{name} is required")
        if method.loads_unlabeled(args) and not args.unlabeled_csv:
            problems.append(f"{method.name} needs --unlabeled_csv")
    if method.uses_quality and not args.mq_checkpoint and not method.multitask:
        problems.append(f"{method.name} needs g_phi: pass --mq_checkpoint")
    for name in ("epochs", "batch_size_labeled", "batch_size_unlabeled", "image_size"):
        if getattr(args, name) < 1:
            problems.append(f"--{name} must be >= 1")
    if problems:
        raise SystemExit("error: " + "; ".join(problems))


class _Meter:
    """Running means of the logged scalars over an epoch, summed on the device so that
    logging costs no host synchronisation per step."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, logs: dict[str, float | torch.Tensor]) -> None:
        for k, v in logs.items():
            v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] += 1

    def means(self) -> dict[str, float]:
        return {k: float(self.sums[k]) / self.counts[k] for k in self.sums}


def build_networks(args, method: type[SSLMethod], ctx: DistContext) -> list[torch.nn.Module]:
    """The method's networks (CPS: two, with different init seeds), wrapped for DDP."""
    nets = []
    for k in range(method.num_networks):
        torch.manual_seed(args.seed + 1000 * k)
        net = create_seg_model(args.seg_model, **seg_model_kwargs(args))
        # K data sets + the synthetic task (§11); a network without prompts stays as it is
        net = PromptedSegNet(net, args.num_datasets + 1) if method.prompted else FeatureNet(net)
        # Channels-last on every device: tensor cores on CUDA, and oneDNN's convolutions on
        # a CPU (U-Net++ forward + backward 9% faster at 64 px).
        net = net.to(ctx.device, memory_format=torch.channels_last)
        what = f"f_theta {args.seg_model}" + (f" #{k + 1}" if method.num_networks > 1 else "")
        nets.append(maybe_compile(wrap_ddp(net, ctx), args.compile, ctx.device, what))
    return nets


def to_device_images(images: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    x = normalize_tensor(images.to(ctx.device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last)


def unlabeled_inputs(
    item: dict[str, torch.Tensor] | None, ctx: DistContext
) -> tuple[torch.Tensor | None, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """(x_u, strong views, CutMix boxes) of an unlabeled batch on the device (Batch's
    fields; the views and boxes are empty unless the method asked for them)."""
    if item is None:
        return None, (), ()
    x_u = to_device_images(item["image"], ctx)
    if "strong" not in item:
        return x_u, (), ()
    views, boxes = item["strong"], item["box"].to(ctx.device, non_blocking=True)
    x_s = tuple(to_device_images(views[:, k], ctx) for k in range(views.shape[1]))
    return x_u, x_s, tuple(boxes[:, k, None].float() for k in range(boxes.shape[1]))


def task_tensor(item: dict | None, ctx: DistContext) -> torch.Tensor | None:
    """The batch's task indices on the device (multi-task runs), or None."""
    if item is None or "task" not in item:
        return None
    return torch.as_tensor(item["task"]).to(ctx.device, non_blocking=True)


def eval_loader(csv_path: str, args: argparse.Namespace, ctx: DistContext) -> DataLoader:
    """A validation or test loader: cached images, no augmentation, sharded across ranks."""
    dataset = LabeledSegDataset(
        csv_path, args.image_size, augment=False, num_threads=args.cache_threads
    )
    return sharded_loader(dataset, args.batch_size_labeled, args.num_workers, ctx, False)[0]


def train(args: argparse.Namespace, method_cls: type[SSLMethod], ctx: DistContext) -> Path:
    validate(args, method_cls)
    args.betas = list(args.betas or method_cls.adam_betas)  # args.json records the ones used
    model_acr = seg_model_acronym(args.seg_model)
    if not args.experiment_name:
        args.experiment_name = (
            f"{method_cls.acronym}_{args.dataset or 'data'}_{model_acr}_seed{args.seed}"
        )
    run_dir = Path(args.output_dir) / args.experiment_name
    if args.resume and (run_dir / "results.json").exists():
        # RESUME=true over a whole table: finished runs are left as they are.
        if ctx.is_main:
            print(f"{run_dir} has finished (results.json); nothing to resume", flush=True)
        return run_dir
    # g_phi (and the task table) first: a wrong checkpoint, image size or table fails
    # before anything is written.
    tasks = load_task_table(args.task_table) if method_cls.multitask else None
    quality = None
    if method_cls.uses_quality:
        quality = quality_scorer(args, tasks, ctx)
    run = Run(ctx, args.output_dir, args.experiment_name, args.resume)
    seed_everything(args.seed)

    if tasks is not None:
        # A multi-task run (§11): task-balanced batches, validation and test per task.
        args.num_datasets = len(tasks)
        data = build_multitask_data(
            tasks, args, ctx, method_cls.needs_unlabeled, method_cls.strong_views
        )
        labeled, l_loader, l_sampler = data.labeled, data.l_loader, data.l_sampler
        unlabeled, u_loader, u_sampler = data.unlabeled, data.u_loader, data.u_sampler
        val_loaders = task_eval_loaders(tasks, "val", args, ctx, eval_loader)
    else:
        labeled = LabeledSegDataset(
            args.labeled_train_csv,
            args.image_size,
            augment=True,
            seed=args.seed,
            num_threads=args.cache_threads,
        )
        l_loader, l_sampler = sharded_loader(
            labeled, args.batch_size_labeled, args.num_workers, ctx, True, args.seed
        )
        val_loaders = {"": eval_loader(args.labeled_val_csv, args, ctx)}
        unlabeled = u_sampler = u_loader = None
    if tasks is None and method_cls.loads_unlabeled(args):
        unlabeled = UnlabeledSegDataset(
            args.unlabeled_csv,
            args.image_size,
            augment=True,
            seed=args.seed + 1,
            num_threads=args.cache_threads,
            strong_views=method_cls.strong_views,
        )
        u_loader, u_sampler = sharded_loader(
            unlabeled, args.batch_size_unlabeled, args.num_workers, ctx, True, args.seed + 1
        )
    steps = steps_per_epoch(l_loader, u_loader)
    # D_U's held-out masks (diagnostics only, §6.1), read by rank 0
    heldout = (
        heldout_dataset(args.unlabeled_csv, args.image_size, args.cache_threads)
        if ctx.is_main and args.unlabeled_csv
        else None
    )
    if unlabeled is None and args.unlabeled_csv:
        # SUP given D_U: the epoch still spans max(labeled, unlabeled) batches (§4.2),
        # counted from the CSV without loading its images, so that SUP gets as many updates
        # as every SSL method it is compared with.
        n_u = len(
            EpochSampler(
                len(load_unlabeled_csv(args.unlabeled_csv)), True, 0, ctx.rank, ctx.world_size
            )
        )
        steps = max(steps, n_u // args.batch_size_unlabeled or 1)

    networks = build_networks(args, method_cls, ctx)
    method = method_cls(args, networks, quality)
    params = [p for net in networks for p in net.parameters()]
    clip_groups = method.clip_groups()  # fixed for the run; not rebuilt every step
    optimizer = torch.optim.AdamW(
        params, lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay
    )
    scheduler = cosine_lr_scheduler(optimizer, args.epochs, eta_min=args.eta_min)
    amp_dtype = autocast_dtype(args.mixed_precision, ctx.device)
    scaler = make_grad_scaler(ctx.device, amp_dtype)
    lam_schedule = LambdaSchedule(
        args.lambda_initial,
        args.lambda_final,
        args.lambda_warmup,
        args.lambda_rampup,
        shape=args.lambda_shape,
    )
    stopper = EarlyStopping(args.patience, mode="max", count_from=patience_start(args))
    components = {"method": method, "optimizer": optimizer, "scheduler": scheduler}
    components["scaler"] = scaler
    point = run.resume(stopper, **components)
    step = point.step if point else 0
    l_stream = BatchStream(l_loader, l_sampler, step)
    u_stream = BatchStream(u_loader, u_sampler, step) if u_loader is not None else None
    if point is not None:
        # The loaders the interrupted run had open are opened again before its RNG state
        # comes back (opening one draws from the global RNG): the resumed run is exact.
        for stream in (l_stream, u_stream):
            if stream is not None:
                stream.prime()
        prime_persistent(*val_loaders.values())
    run.restore_rng(point)

    def evaluate(loaders: dict[str, DataLoader]) -> tuple[dict, dict | None]:
        """(summary, per-task summaries): a multi-task run scores the mean over tasks of
        each task's own Dice (§11), a single-task run its one data set (per_task None)."""
        model = method.eval_model()
        if tasks is None:
            loader = loaders[""]
            return summarize(evaluate_segmentation(model, loader, ctx.device, amp_dtype)), None
        per_task = evaluate_tasks(model, loaders, ctx.device, amp_dtype, method_cls.prompted)
        return task_mean(per_task), per_task

    run.write_record(
        args,
        labeled_images=len(labeled),
        val_images=sum(len(v.dataset) for v in val_loaders.values()),
        unlabeled_images=len(unlabeled) if unlabeled is not None else 0,
        steps_per_epoch=steps,
    )
    u_text = f", {len(unlabeled)} unlabeled" if unlabeled is not None else ""
    run.log(
        f"{method_cls.acronym} on {args.seg_model} ({model_acr}): {len(labeled)} labeled"
        f"{u_text}; {steps} steps/epoch; lambda {args.lambda_initial}->{args.lambda_final}"
        f" (warm-up {args.lambda_warmup}, ramp {args.lambda_rampup}); patience "
        f"{args.patience} counted from epoch {stopper.count_from + 1}; device "
        f"{ctx.device} x {ctx.world_size}; run folder {run.dir}"
    )
    for epoch in run.epochs(point, 0, args.epochs):
        for net in networks:
            net.train()
        meter = _Meter()
        lr = optimizer.param_groups[0]["lr"]
        bar = progress(range(steps), desc=f"epoch {epoch + 1}/{args.epochs}", enabled=ctx.is_main)
        for i in bar:
            lb, ub = next(l_stream), next(u_stream) if u_stream else None
            batch = Batch(
                to_device_images(lb["image"], ctx),
                lb["mask"].to(ctx.device, non_blocking=True).float(),
                *unlabeled_inputs(ub, ctx),
                t_l=task_tensor(lb, ctx),
                t_u=task_tensor(ub, ctx),
            )
            epoch_f = epoch + i / steps
            lam = lam_schedule(epoch_f)
            info = StepInfo(step=step, epoch=epoch_f, lam=lam, ramp=lam_schedule.progress(epoch_f))
            with autocast(ctx.device, amp_dtype):
                loss, logs = method.train_step(batch, info)
            check_loss_finite(loss, logs, epoch, step, ctx)
            clip_and_step(loss, optimizer, scaler, clip_groups, args.grad_clip)
            method.after_step(step)
            step += 1
            meter.add({"loss": loss.detach(), **logs, "lambda": lam})
            if ctx.is_main and i % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", lam=f"{lam:.3g}", refresh=False)
        scheduler.step()  # once after each epoch, without an argument (§9: no off-by-one)

        val, val_tasks = evaluate(val_loaders)
        score = val[SELECTION_METRIC]["mean"]
        stopper.update(score, epoch)
        means = {k: reduce_mean(v, ctx) for k, v in meter.means().items()}
        diag = mechanism_diagnostics(method, heldout, ctx.device) if heldout is not None else {}
        terms = "  ".join(f"{k} {v:.4f}" for k, v in means.items() if k.startswith("loss"))
        run.end_epoch(
            epoch,
            {
                "epoch": epoch,
                "lr": lr,
                **means,
                **{f"val_{k}": v["mean"] for k, v in val.items()},
                **(task_columns(val_tasks, "val_") if val_tasks else {}),
                "best_epoch": stopper.best_epoch,
                **diag,
            },
            stopper,
            step=step,
            best=partial(best_checkpoint, method, epoch, val, args, means["lambda"], val_tasks),
            line=f"{terms}  lambda {means['lambda']:.4g} | val dice {score:.4f}"
            + "".join(f" | {k[5:]} {v:.3f}" for k, v in diag.items() if k.endswith("_dice")),
            **components,
        )
        if stopper.stop:
            break

    # The single test of the selected model.
    barrier(ctx)
    best_state = load_checkpoint(run.best, map_location=ctx.device)
    method.eval_model().load_state_dict(best_state["model"])
    if tasks is None:
        test_loaders = {"": eval_loader(args.labeled_test_csv, args, ctx)}
    else:
        test_loaders = task_eval_loaders(tasks, "test", args, ctx, eval_loader)
    test, test_tasks = evaluate(test_loaders)
    num_test = sum(len(v.dataset) for v in test_loaders.values())
    if ctx.is_main:
        results = {
            "method": method_cls.name,
            "method_acronym": method_cls.acronym,
            "seg_model": args.seg_model,
            "model_acronym": model_acr,
            "dataset": args.dataset,
            "seed": args.seed,
            "experiment_name": args.experiment_name,
            "best_epoch": stopper.best_epoch,
            # mean lambda over the selected epoch: 0 means the unsupervised term never acted
            "lambda_at_best": best_state.get("lambda"),
            "val": best_state["val"],
            "test": test,
            "num_test_images": num_test,
        }
        if test_tasks is not None:
            # one entry per task, its own prompt; "test" above is their mean (§11)
            results["tasks"] = {
                t.name: {
                    "test": test_tasks[t.name],
                    "val": best_state.get("val_tasks", {}).get(t.name),
                    "num_test_images": len(test_loaders[t.name].dataset),
                }
                for t in tasks
            }
        write_json(results, run.dir / "results.json")
        if heldout is not None:
            plot_diagnostics(run.dir / "summary.csv", run.dir / "diagnostics.png")
        if not args.keep_latest:
            # Only resuming needs it (optimiser, EMA, RNG): hundreds of MB per finished run.
            run.latest.unlink(missing_ok=True)
        for name, summary in (test_tasks or {}).items():
            print(f"test {name}: {format_summary(summary)}", flush=True)
        print(
            f"test ({num_test} images"
            + (f", mean +- std over {len(test_tasks)} tasks" if test_tasks else "")
            + f", best epoch {stopper.best_epoch + 1}, "
            f"lambda {results['lambda_at_best'] or 0.0:.4g}): "
            f"{format_summary(test)}",
            flush=True,
        )
    return run.dir


def best_checkpoint(
    method: SSLMethod,
    epoch: int,
    val: dict,
    args: argparse.Namespace,
    lam: float,
    val_tasks: dict | None = None,
) -> dict[str, Any]:
    """best.pth: the selected network's weights, its epoch, lambda and validation scores
    (and each task's, in a multi-task run)."""
    state = {
        "model": method.eval_model().state_dict(),
        "epoch": epoch,
        "lambda": float(lam),
        "val": plain(val),
        "args": plain(vars(args)),
    }
    if val_tasks is not None:
        state["val_tasks"] = plain(val_tasks)
    return state


def quality_scorer(args: argparse.Namespace, tasks: list | None, ctx: DistContext) -> Any:
    """The frozen g_phi: --mq_checkpoint; in a multi-task run one for every task, or one per
    task when the task table has an mq_checkpoint column (§11)."""

    def load(path) -> QualityScorer:
        return QualityScorer(path, ctx.device, args.image_size, args.mq_resize, args.compile)

    if tasks is None:
        return load(args.mq_checkpoint)
    own = [t.mq_checkpoint for t in tasks]
    if all(own):
        if args.mq_checkpoint:
            print("notice: the task table names a g_phi per task; --mq_checkpoint is ignored")
        return TaskQuality([load(p) for p in own])
    if any(own):
        missing = [t.name for t in tasks if not t.mq_checkpoint]
        raise SystemExit(
            f"error: {args.task_table} names a g_phi (mq_checkpoint) for some tasks but not "
            f"for {missing}: give every task one, or none and pass --mq_checkpoint"
        )
    if not args.mq_checkpoint:
        raise SystemExit(
            f"error: {args.method} needs g_phi: pass --mq_checkpoint (one for every task) or "
            f"give {args.task_table} an mq_checkpoint column (one per task)"
        )
    return TaskQuality([load(args.mq_checkpoint)])


def main(argv: list[str] | None = None) -> Path:
    args, method = parse_args(argv)
    return run_main(lambda: train(args, method, init_distributed(args.device)))


if __name__ == "__main__":
    main()
