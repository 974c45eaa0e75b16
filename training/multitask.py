"""The training loop's multi-task data and evaluation, for VerSemi and its baselines
(docs/METHOD.md §11): one task table, every task's labeled images in task-balanced
batches, the unlabeled images of the tasks that have them (balanced too, each tagged with
its task), and validation and test per task with the task's own prompt.

Selection reads the mean over tasks of each task's own validation Dice, so a large data
set cannot outvote a small one; the test reports every task and their mean.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from data.multitask import Task, TaskBalancedBatchSampler, TaskDataset
from data.seg_datasets import LabeledSegDataset, UnlabeledSegDataset
from models.versemi import FixedPrompt
from training.distributed import DistContext
from training.eval_utils import evaluate_segmentation
from training.loaders import make_loader
from training.metrics import summarize


@dataclass
class MultiTaskData:
    """What the loop reads for a multi-task run."""

    tasks: list[Task]
    labeled: TaskDataset
    l_loader: DataLoader
    l_sampler: TaskBalancedBatchSampler
    unlabeled: TaskDataset | None
    u_loader: DataLoader | None
    u_sampler: TaskBalancedBatchSampler | None


def per_task_share(batch_size: int, num_tasks: int, flag: str) -> int:
    """Images of each task in a batch of `batch_size` (rounded down, with a notice)."""
    share = batch_size // num_tasks
    if share < 1:
        raise SystemExit(
            f"error: {flag} {batch_size} cannot hold one image of each of the {num_tasks} "
            f"tasks: set it to at least {num_tasks}"
        )
    if share * num_tasks != batch_size:
        print(
            f"notice: {flag} {batch_size} is not a multiple of the {num_tasks} tasks; "
            f"batches hold {share} per task ({share * num_tasks} images)",
            file=sys.stderr,
        )
    return share


def balanced_loader(
    dataset: TaskDataset, per_task: int, args: argparse.Namespace, ctx: DistContext, seed: int
) -> tuple[DataLoader, TaskBalancedBatchSampler]:
    sizes = [len(d) for d in dataset.datasets]
    sampler = TaskBalancedBatchSampler(sizes, per_task, seed, ctx.rank, ctx.world_size)
    return make_loader(dataset, sampler, None, args.num_workers, ctx.device), sampler


def build_multitask_data(
    tasks: list[Task],
    args: argparse.Namespace,
    ctx: DistContext,
    needs_unlabeled: bool,
    strong_views: int = 0,
) -> MultiTaskData:
    """Open the task table's labeled and unlabeled task-balanced loaders. The unlabeled
    images are loaded whenever the table has some, also for a method that does not read
    them (Pooled), so that its epoch spans as many steps as VerSemi's (§4.2)."""
    labeled = TaskDataset(
        [
            LabeledSegDataset(
                t.labeled_csv,
                args.image_size,
                augment=True,
                seed=args.seed + 7919 * k,
                num_threads=args.cache_threads,
            )
            for k, t in enumerate(tasks)
        ]
    )
    share = per_task_share(args.batch_size_labeled, len(tasks), "--batch_size_labeled")
    l_loader, l_sampler = balanced_loader(labeled, share, args, ctx, args.seed)
    unlabeled = u_loader = u_sampler = None
    with_u = [k for k, t in enumerate(tasks) if t.unlabeled_csv is not None]
    if needs_unlabeled and not with_u:
        raise SystemExit(
            f"error: {args.method} needs unlabeled images, but no task of "
            f"{args.task_table} has an unlabeled_csv"
        )
    if with_u:
        unlabeled = TaskDataset(
            [
                UnlabeledSegDataset(
                    tasks[k].unlabeled_csv,
                    args.image_size,
                    augment=True,
                    seed=args.seed + 1 + 7919 * k,
                    num_threads=args.cache_threads,
                    strong_views=strong_views,
                )
                for k in with_u
            ],
            task_ids=with_u,
        )
        u_share = per_task_share(args.batch_size_unlabeled, len(with_u), "--batch_size_unlabeled")
        u_loader, u_sampler = balanced_loader(unlabeled, u_share, args, ctx, args.seed + 1)
    return MultiTaskData(tasks, labeled, l_loader, l_sampler, unlabeled, u_loader, u_sampler)


def task_eval_loaders(
    tasks: list[Task], split: str, args: argparse.Namespace, ctx: DistContext, eval_loader: Any
) -> dict[str, DataLoader]:
    """{task name: loader} of every task's `split` CSV ("val" or "test")."""
    return {t.name: eval_loader(str(getattr(t, f"{split}_csv")), args, ctx) for t in tasks}


def evaluate_tasks(
    model: torch.nn.Module,
    loaders: dict[str, DataLoader],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    prompted: bool,
) -> dict[str, dict[str, dict[str, float | int]]]:
    """{task: summary} with task k tested under its own prompt k (or, for a network
    without prompts, as it is)."""
    out = {}
    for k, (name, loader) in enumerate(loaders.items()):
        net = FixedPrompt(model, k) if prompted else model
        out[name] = summarize(evaluate_segmentation(net, loader, device, amp_dtype))
    return out


def task_mean(per_task: dict[str, dict[str, dict[str, float | int]]]) -> dict[str, dict]:
    """{metric: {"mean", "std", "n"}} over tasks of each task's mean (selection's score)."""
    metrics = next(iter(per_task.values())).keys()
    out = {}
    for m in metrics:
        v = np.array([float(s[m]["mean"]) for s in per_task.values()])
        out[m] = {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}
    return out


def task_columns(per_task: dict[str, dict[str, dict]], prefix: str) -> dict[str, float]:
    """summary.csv columns `<prefix><task>_<metric>` of every task's mean."""
    return {
        f"{prefix}{t}_{m}": float(s["mean"]) for t, ms in per_task.items() for m, s in ms.items()
    }
