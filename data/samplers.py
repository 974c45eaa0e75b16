"""Reproducible sampling: epoch-encoding indices and per-sample random generators.

Every dataset of the project draws its randomness (augmentation, corruption) from a
generator seeded by ``(seed, epoch, index)``. The sampler below hands the dataset indices
that carry the epoch (``epoch * n + i``), so results do not depend on the number of loader
workers, persistent workers need no signal when the epoch changes, and a fixed evaluation
set is the same on every run.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: a pure function of (seed, epoch, index)."""
    return np.random.default_rng((seed & 0xFFFFFFFF, epoch, index))


def split_index(global_index: int, length: int) -> tuple[int, int]:
    """Decode a sampler index into (epoch, index within the epoch)."""
    return divmod(int(global_index), length)


class EpochSampler(Sampler[int]):
    """Indices ``epoch * n + i`` over ``i in range(n)``, shuffled per epoch, sharded per rank.

    With several processes (DDP) each rank takes every ``world_size``-th index of the same
    permutation; the permutation is padded by wrapping so that all ranks run the same
    number of steps (as torch's DistributedSampler does) unless ``drop_last``.
    """

    def __init__(
        self,
        length: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if length <= 0:
            raise ValueError(f"EpochSampler needs a positive length, got {length}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation; `start` skips this rank's first `start` indices
        (a resumed run re-entering the epoch where it stopped)."""
        self.epoch = epoch
        self.start = int(start)

    def __len__(self) -> int:
        if self.drop_last:
            return self.length // self.world_size
        return -(-self.length // self.world_size)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=g).numpy()
        else:
            order = np.arange(self.length)
        total = len(self) * self.world_size
        if total > self.length:
            order = np.resize(order, total)  # wrap around to pad
        order = order[:total][self.rank :: self.world_size][self.start :]
        base = self.epoch * self.length
        return iter((base + order).tolist())
