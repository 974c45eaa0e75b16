"""Data loaders that never starve the model, progress bars, and the endless batch stream of
Phase 2 that a resumed run re-enters at the exact batch where it stopped."""

from __future__ import annotations

import sys
from typing import Any

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from data.samplers import EpochSampler
from training.distributed import DistContext


def worker_init(_: int) -> None:
    """Loader workers: one thread each for OpenCV and torch (the workers are the parallelism)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def progress(iterable: Any, desc: str, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar; when output is not a terminal (logs, CI) it updates every 30 s instead of
    filling the log with carriage returns."""
    interactive = sys.stderr.isatty()
    return tqdm(
        iterable,
        desc=desc,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.1 if interactive else 30.0,
        **kwargs,
    )


def make_loader(
    dataset: Dataset,
    sampler: Sampler,
    batch_size: int | None,
    num_workers: int,
    device: torch.device,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with workers that never starve the model: persistent, prefetching,
    pinned memory on CUDA. The sampler (data.samplers.EpochSampler) carries the epoch;
    with `batch_size` None it is a batch sampler (data.multitask's task-balanced one)."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=worker_init)
    if batch_size is None:
        kwargs["batch_sampler"] = sampler
    else:
        kwargs.update(batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    return DataLoader(
        dataset,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        **kwargs,
    )


def sharded_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    ctx: DistContext,
    shuffle: bool,
    seed: int = 0,
) -> tuple[DataLoader, EpochSampler]:
    """This rank's loader over `dataset`, with its EpochSampler. A shuffled (training) loader
    drops the last partial batch when there is at least one full batch."""
    sampler = EpochSampler(len(dataset), shuffle, seed, ctx.rank, ctx.world_size)
    drop_last = shuffle and len(sampler) >= batch_size
    loader = make_loader(dataset, sampler, batch_size, num_workers, ctx.device, drop_last)
    return loader, sampler


def prime_persistent(*loaders: DataLoader) -> None:
    """Open the persistent iterators of loaders that an uninterrupted run had already opened.

    Opening a DataLoader iterator draws a worker seed from the global torch RNG. A resumed
    run calls this before restoring the RNG state of its checkpoint, so that its training
    steps draw the same numbers as the run that was never interrupted.
    """
    for loader in loaders:
        if loader.persistent_workers:
            iter(loader)


def steps_per_epoch(*loaders: DataLoader | None) -> int:
    """One Phase 2 epoch: max(len(labeled loader), len(unlabeled loader)) iterations, the
    shorter loader cycling (docs/METHOD.md §4.2); absent loaders (None) are ignored."""
    lengths = [len(loader) for loader in loaders if loader is not None]
    if not lengths or max(lengths) == 0:
        raise ValueError("steps_per_epoch needs at least one non-empty loader")
    return max(lengths)


class BatchStream:
    """A loader's batches forever: pass p calls `sampler.set_epoch(p)`, so every pass is a
    fresh shuffle with fresh augmentations (the epoch travels in the sampler's indices).

    `start_step` (batches already consumed, for a resumed run) re-enters pass
    start_step // len(loader) at its next batch. The consumed batches are skipped in the
    sampler, not loaded, and the rest of the pass is the same batches an uninterrupted run
    would see. A batch sampler (loader.batch_size None) skips whole batches.
    """

    def __init__(self, loader: DataLoader, sampler: EpochSampler, start_step: int = 0) -> None:
        owners = (
            getattr(loader, "sampler", None),
            loader.batch_sampler,
            getattr(loader.batch_sampler, "sampler", None),
        )
        if not any(s is sampler for s in owners):
            # set_epoch on another sampler would replay the same shuffle on every pass.
            raise ValueError("BatchStream: `sampler` must be the sampler of `loader`")
        if len(loader) == 0:
            raise ValueError("BatchStream: the loader yields no batches (batch size > data?)")
        self.loader, self.sampler = loader, sampler
        self.pass_index, offset = divmod(int(start_step), len(loader))
        self._skip = offset * int(loader.batch_size or 1)
        self._resumed = start_step > 0
        self._iterator: Any = None

    def prime(self) -> None:
        """Open the current pass now if an uninterrupted run had it open at `start_step`
        (mid-pass, or persistent workers): see `prime_persistent`. Call before restoring
        the checkpoint's RNG state."""
        if self._iterator is None and (
            self._skip > 0 or (self._resumed and self.loader.persistent_workers)
        ):
            self._open()

    def _open(self) -> None:
        self.sampler.set_epoch(self.pass_index, start=self._skip)
        self._skip = 0
        self._iterator = iter(self.loader)

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._open()
        try:
            return next(self._iterator)
        except StopIteration:
            self.pass_index += 1
            self._open()
            return next(self._iterator)
