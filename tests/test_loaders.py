"""The Phase 2 batch stream: passes reshuffle, and a resumed stream re-enters a pass at the
batch where the interrupted one stopped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.samplers import EpochSampler
from data.seg_datasets import UnlabeledSegDataset
from training.loaders import BatchStream, make_loader, steps_per_epoch


def tiny_set(n: int = 5) -> UnlabeledSegDataset:
    images = np.random.default_rng(0).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    return UnlabeledSegDataset.from_arrays(images, augment=True, seed=3)


def batches(stream: BatchStream, k: int) -> list[torch.Tensor]:
    return [next(stream)["image"] for _ in range(k)]


def test_stream_reshuffles_every_pass_and_checks_its_sampler():
    ds = tiny_set(4)
    sampler = EpochSampler(len(ds), shuffle=True, seed=1)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    stream = BatchStream(loader, sampler, start_step=10)  # pass 5
    passes = []
    for _ in range(3):
        order = [i for _ in range(len(loader)) for i in next(stream)["index"].tolist()]
        assert sorted(order) == [0, 1, 2, 3]  # every pass sees every image once
        passes.append(sampler.epoch)
    assert passes == [5, 6, 7]
    with pytest.raises(ValueError, match="sampler of `loader`"):
        BatchStream(loader, EpochSampler(len(ds)))


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("start", [1, 2, 3, 7])
def test_a_resumed_stream_continues_with_the_same_batches(workers, start):
    """Batches start, start+1, ... of a stream started at `start` are those of a stream
    that ran from 0, mid-pass (start % 3 != 0) or at a pass boundary; the last, partial
    batch of a pass (5 images in batches of 2, drop_last) never appears."""

    def stream(start_step: int) -> BatchStream:
        ds = tiny_set(5)
        sampler = EpochSampler(len(ds), shuffle=True, seed=2)
        loader = make_loader(ds, sampler, 2, workers, torch.device("cpu"), drop_last=True)
        return BatchStream(loader, sampler, start_step)

    whole = batches(stream(0), start + 5)
    resumed = stream(start)
    resumed.prime()
    for a, b in zip(whole[start:], batches(resumed, 5)):
        assert torch.equal(a, b)


def test_priming_draws_from_the_global_rng_as_the_uninterrupted_run_did():
    """Opening a loader draws a seed from torch's global RNG: a resumed stream that is
    mid-pass opens its pass before the RNG state comes back, so that draws after it match."""
    ds = tiny_set(5)
    sampler = EpochSampler(len(ds), shuffle=True, seed=2)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    torch.manual_seed(0)
    whole = BatchStream(loader, sampler)
    next(whole)
    state = torch.get_rng_state()  # the "checkpoint" after one step
    expected = torch.rand(3)
    resumed = BatchStream(loader, sampler, start_step=1)
    resumed.prime()
    torch.set_rng_state(state)
    next(resumed)
    assert torch.equal(torch.rand(3), expected)


def test_steps_per_epoch_is_the_longer_loader():
    ds = tiny_set(4)
    short = DataLoader(ds, batch_size=4)
    long = DataLoader(ds, batch_size=1)
    assert steps_per_epoch(short, long) == 4
    assert steps_per_epoch(short, None) == 1


@pytest.mark.parametrize("start", [2, 5, 6])
def test_a_resumed_task_balanced_stream_continues_with_the_same_batches(start):
    """VerSemi's loader takes a batch sampler (batch_size None): a resumed stream skips
    whole task-balanced batches and then yields those of the uninterrupted run."""
    from data.multitask import TaskBalancedBatchSampler, TaskDataset

    def stream(start_step: int) -> BatchStream:
        ds = TaskDataset([tiny_set(3), tiny_set(7)])
        sampler = TaskBalancedBatchSampler([3, 7], per_task=2, seed=4)
        loader = make_loader(ds, sampler, None, 0, torch.device("cpu"))
        return BatchStream(loader, sampler, start_step)

    uninterrupted = stream(0)
    whole = [next(uninterrupted) for _ in range(start + 4)]
    resumed = stream(start)
    resumed.prime()
    for a, b in zip(whole[start:], [next(resumed) for _ in range(4)]):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["task"], b["task"])
        assert a["task"].tolist() == [0, 0, 1, 1]
