"""Multi-task data for VerSemi (docs/METHOD.md §11): the task table, every task's labeled
images in one data set, batches that hold each task in equal shares, and the cross-task
pairs and square boxes of its CutMix.

- Task table: a CSV (`name,labeled_csv,unlabeled_csv,val_csv,test_csv`) or a JSON list of
  objects with those keys, one row per data set; relative paths are relative to the
  table's folder; `unlabeled_csv` may be empty; an optional `mq_checkpoint` column names
  each task's own g_phi.
- `TaskDataset`: the tasks' data sets behind one index, `code = task * STRIDE +
  local index` (the local index carries the epoch as every data set's does, see
  data.samplers), each item tagged with its "task".
- `TaskBalancedBatchSampler`: every batch holds `per_task` images of each task, whatever the
  data sets' sizes: an epoch is as many batches as the largest task needs to be seen
  once, the smaller tasks cycling through fresh permutations (and fresh augmentations).
- `different_task_partner`: for each image of a batch the next one from another task.
- `SquareBox`: VerSemi's CutMix box, a square of side r x the image side.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from data.io import DataError, load_labeled_csv

TASK_COLUMNS = ("name", "labeled_csv", "unlabeled_csv", "val_csv", "test_csv")
STRIDE = 1 << 40  # a task's share of the index space (local indices are epoch * n + i)


@dataclass(frozen=True)
class Task:
    name: str
    labeled_csv: Path
    unlabeled_csv: Path | None
    val_csv: Path
    test_csv: Path
    mq_checkpoint: Path | None = None  # this task's own g_phi (optional column)


def load_task_table(path: str | Path) -> list[Task]:
    """Read a task table; errors name the file, the row and the column at fault."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"task table not found: {path}")
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path}: a JSON task table is a list of objects, one per task")
    else:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in TASK_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {missing}; a task table has {list(TASK_COLUMNS)}"
                )
            rows = list(reader)
    tasks, seen = [], set()
    for i, row in enumerate(rows, start=2 if path.suffix.lower() != ".json" else 0):
        where = f"{path}, {'row' if path.suffix.lower() != '.json' else 'entry'} {i}"
        name = str(row.get("name") or "").strip()
        if not name or name in seen:
            raise DataError(f"{where}: task name {name!r} is {'repeated' if name else 'empty'}")
        seen.add(name)

        tasks.append(
            Task(
                name,
                _resolve(row, "labeled_csv", where, path.parent),
                _resolve(row, "unlabeled_csv", where, path.parent, optional=True),
                _resolve(row, "val_csv", where, path.parent),
                _resolve(row, "test_csv", where, path.parent),
                _resolve(row, "mq_checkpoint", where, path.parent, optional=True),
            )
        )
    if len(tasks) < 2:
        raise DataError(
            f"{path}: VerSemi trains two or more tasks together, the table has {len(tasks)}"
        )
    return tasks


def _resolve(row: dict, column: str, where: str, base: Path, optional: bool = False):
    """A table cell's path (relative to the table's folder), checked to exist."""
    value = str(row.get(column) or "").strip()
    if not value:
        if optional:
            return None
        raise DataError(f"{where}: column {column} is empty")
    p = Path(value) if Path(value).is_absolute() else base / value
    if not p.is_file():
        raise DataError(f"{where}: {column} {p} does not exist")
    return p


class TaskDataset(Dataset):
    """Several data sets behind one index: `code = position * STRIDE + local`, each item
    gains "task", the data set's task index (`task_ids[position]`, by default its
    position: a table whose some tasks have no unlabeled CSV keeps their indices). `len`
    is the total number of images."""

    def __init__(self, datasets: Sequence[Dataset], task_ids: Sequence[int] | None = None) -> None:
        if not datasets:
            raise ValueError("TaskDataset needs at least one data set")
        self.datasets = list(datasets)
        self.task_ids = list(range(len(self.datasets)) if task_ids is None else task_ids)
        if len(self.task_ids) != len(self.datasets):
            raise ValueError(f"{len(self.datasets)} data sets but task_ids {self.task_ids}")

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, code: int) -> dict:
        position, local = divmod(int(code), STRIDE)
        item = dict(self.datasets[position][local])
        item["task"] = self.task_ids[position]
        return item


class TaskBalancedBatchSampler(Sampler[list[int]]):
    """Batches of `per_task` images from each task (`TaskDataset` codes), grouped by task.

    An epoch has ceil(max_k n_k / per_task) batches; task k walks through permutations of
    its n_k images (one per pass, seeded by (seed, epoch, task, pass)), each pass its own
    local epoch so that a repeated image gets a fresh augmentation. Sharded across DDP
    ranks by batch. `set_epoch` as data.samplers.EpochSampler.
    """

    def __init__(
        self, sizes: Sequence[int], per_task: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if per_task < 1 or any(n < 1 for n in sizes):
            raise ValueError(
                f"per_task must be >= 1 and every task non-empty, got {per_task}, {list(sizes)}"
            )
        self.sizes, self.per_task = [int(n) for n in sizes], int(per_task)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = self.start = 0
        self.batches = math.ceil(max(self.sizes) / self.per_task)
        self.passes = [math.ceil(self.batches * self.per_task / n) for n in self.sizes]

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Pass `epoch`, skipping its first `start` batches of this rank (a resumed run)."""
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self) -> int:
        return len(range(self.rank, self.batches, self.world_size))

    def __iter__(self) -> Iterator[list[int]]:
        streams = []
        for task, (n, passes) in enumerate(zip(self.sizes, self.passes)):
            codes = []
            for p in range(passes):
                rng = np.random.default_rng((self.seed & 0xFFFFFFFF, self.epoch, task, p))
                local_epoch = self.epoch * passes + p
                codes.extend(task * STRIDE + local_epoch * n + int(i) for i in rng.permutation(n))
            streams.append(codes)
        for b in list(range(self.rank, self.batches, self.world_size))[self.start :]:
            lo = b * self.per_task
            yield [c for codes in streams for c in codes[lo : lo + self.per_task]]


def different_task_partner(tasks: torch.Tensor) -> torch.Tensor:
    """partner[j]: the first image after j (cyclically) whose task differs from j's."""
    tasks = tasks.tolist()
    n = len(tasks)
    if len(set(tasks)) < 2:
        raise ValueError(f"cross-task CutMix needs two tasks in the batch, got tasks {tasks}")
    partner = []
    for j in range(n):
        k = next(k % n for k in range(j + 1, j + n) if tasks[k % n] != tasks[j])
        partner.append(k)
    return torch.tensor(partner)


@dataclass(frozen=True)
class SquareBox:
    """VerSemi's CutMix box: a square of side r x the image side (r fixed, or uniform in
    `r`), wholly inside the image at a uniform position."""

    r: float | tuple[float, float] = 2 / 3

    def __call__(self, rng: np.random.Generator, size: int) -> np.ndarray:
        r = self.r if isinstance(self.r, (int, float)) else rng.uniform(*self.r)
        side = max(1, min(size, round(float(r) * size)))
        y, x = rng.integers(0, size - side + 1, 2).tolist()
        box = np.zeros((size, size), np.uint8)
        box[y : y + side, x : x + side] = 1
        return box


# --------------------------------------------------------------------------------------
# Command line (for train_versemi.sh)
# --------------------------------------------------------------------------------------


def write_pooled_csvs(tasks: Sequence[Task], output_dir: str | Path) -> dict[str, Path]:
    """Every task's labeled train, val and test pairs pooled into one CSV each (absolute
    paths), for one g_phi trained on all tasks' masks (docs/METHOD.md §11)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, column in (("train", "labeled_csv"), ("val", "val_csv"), ("test", "test_csv")):
        rows = ["image_path,mask_path"]
        for t in tasks:
            pairs = load_labeled_csv(getattr(t, column))
            rows += [
                f"{i.resolve()},{m.resolve()}" for i, m in zip(pairs.image_paths, pairs.mask_paths)
            ]
        out[split] = output_dir / f"{split}.csv"
        out[split].write_text("\n".join(rows) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data.multitask",
        description="Print a task table as tab-separated lines (name, labeled, unlabeled, "
        "val, test; absolute paths, '-' for no unlabeled CSV), or pool its labeled splits.",
    )
    p.add_argument("table", help="task table (CSV or JSON)")
    p.add_argument("--pool", metavar="DIR", help="write DIR/{train,val,test}.csv of all tasks")
    a = p.parse_args(argv)
    try:
        tasks = load_task_table(a.table)
        if a.pool:
            for split, path in write_pooled_csvs(tasks, a.pool).items():
                print(f"{split}\t{path}")
            return 0
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for t in tasks:
        cells = [t.labeled_csv, t.unlabeled_csv, t.val_csv, t.test_csv]
        print("\t".join([t.name] + [str(c.resolve()) if c else "-" for c in cells]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
