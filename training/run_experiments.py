"""Run an experiment grid (training/grids.py) with the project's scripts: locally, one cell
after another or N at a time with one GPU each, or as a SLURM job array; then write its
tables and plots (training/grid_report.py). `bash run_experiments.sh` wraps it.

    bash run_experiments.sh                               # the demo grid (CPU, ~15 min)
    bash run_experiments.sh training/grids/main.toml --dry_run
    bash run_experiments.sh GRID --parallel 4 --gpus 0,1,2,3
    bash run_experiments.sh GRID --slurm [--submit] --gpus_per_task 1 --time 24:00:00
    bash run_experiments.sh GRID --report                 # tables and plots only

Every task runs with RESUME=true: a finished cell (results.json) or Phase 1 run
(test_metrics.json) is skipped, an interrupted one continues from its latest.pth, and
nothing finished is overwritten. Each task's console output goes to
OUTPUT_DIR/logs/<task>.log.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

from training.grids import GRID_DIR, Cell, Expansion, GridError, Phase1Run, expand, load_grid

REPO = Path(__file__).resolve().parents[1]
DEMO_GRID = GRID_DIR / "demo.toml"
Task = Phase1Run | Cell


def commands(task: Task) -> list[tuple[list[str], dict[str, str]]]:
    """The script runs of a task, each with its environment: a Phase 1 run trains g_phi
    (train_mq.sh) then tests it (test_mq.sh); a cell is one train_SSL_methods.sh run."""
    if isinstance(task, Phase1Run):
        test_env = {**task.env, "CHECKPOINT": str(task.checkpoint)}
        return [
            (["bash", str(REPO / "train_mq.sh")], task.env),
            (["bash", str(REPO / "test_mq.sh")], test_env),
        ]
    return [(["bash", str(REPO / "train_SSL_methods.sh")], task.env)]


def log_path(expansion: Expansion, task: Task) -> Path:
    return expansion.grid.output_dir / "logs" / (task.id.replace("/", "__") + ".log")


def run_task(expansion: Expansion, task: Task, extra_env: dict[str, str] | None = None) -> int:
    """Run a task's scripts, its output appended to its log; the first failing exit code."""
    path = log_path(expansion, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        for argv, env in commands(task):
            log.write(f"\n$ {' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())} ")
            log.write(" ".join(argv) + "\n")
            log.flush()
            full_env = {**os.environ, **env, **(extra_env or {})}
            rc = subprocess.run(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                return rc
    return 0


def describe(task: Task) -> str:
    """One line of --dry_run: what a task runs."""
    state = "done" if task.done else "todo"
    axes = " ".join(f"{k}={v}" for k, v in task.axes)
    if isinstance(task, Phase1Run):
        return f"[{state}] phase 1 {task.id}: train_mq.sh + test_mq.sh {axes}".rstrip()
    need = f" (g_phi {task.phase1.id})" if task.phase1 else ""
    return (
        f"[{state}] {task.id}: train_SSL_methods.sh METHODS={task.method} "
        f"SEG_MODELS={task.model} SEED={task.seed} {axes}".rstrip()
        + need
    )


def dry_run(expansion: Expansion) -> str:
    lines = [describe(t) for t in (*expansion.phase1, *expansion.cells)]
    todo1 = sum(not t.done for t in expansion.phase1)
    todo2 = sum(not t.done for t in expansion.cells)
    lines.append(
        f"{expansion.grid.name}: {len(expansion.phase1)} Phase 1 runs ({todo1} to run), "
        f"{len(expansion.cells)} Phase 2 cells ({todo2} to run), "
        f"{len(expansion.entries)} table entries"
    )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


class Progress:
    """A line per finished task with the overall ETA: the mean time of the finished tasks
    of each kind (Phase 1 runs and cells take very different times) times the tasks of
    that kind left, over the workers."""

    def __init__(self, todo: Sequence[Task], workers: int, out: Callable[[str], None] = print):
        self.left = {kind: sum(isinstance(t, kind) for t in todo) for kind in (Phase1Run, Cell)}
        self.total, self.workers, self.out = len(todo), workers, out
        self.finished = 0
        self.times: dict[type, list[float]] = {Phase1Run: [], Cell: []}
        self.lock = threading.Lock()

    def eta(self) -> float:
        known = [t for times in self.times.values() for t in times]
        fallback = sum(known) / len(known) if known else 0.0
        seconds = 0.0
        for kind, left in self.left.items():
            times = self.times[kind]
            seconds += left * (sum(times) / len(times) if times else fallback)
        return seconds / self.workers

    def done(self, task: Task, seconds: float, rc: int) -> None:
        with self.lock:
            self.finished += 1
            kind = type(task)
            self.left[kind] -= 1
            self.times[kind].append(seconds)
            state = "done" if rc == 0 else f"FAILED (exit {rc})"
            self.out(
                f"[{self.finished}/{self.total}] {task.id} {state} in {_duration(seconds)}; "
                f"ETA {_duration(self.eta())}"
            )


def run_local(expansion: Expansion, parallel: int = 1, gpus: Sequence[str] = ()) -> list[Task]:
    """Every unfinished task, Phase 1 runs first; `parallel` at a time, each worker on its
    own GPU (`gpus`, CUDA_VISIBLE_DEVICES). Returns the tasks that failed or were skipped
    because their g_phi failed."""
    if gpus and len(gpus) < parallel:
        raise SystemExit(f"error: --parallel {parallel} needs as many --gpus, got {list(gpus)}")
    free = list(gpus)
    lock = threading.Lock()
    todo1 = [t for t in expansion.phase1 if not t.done]
    todo2 = [t for t in expansion.cells if not t.done]
    progress = Progress([*todo1, *todo2], parallel)
    # Workers on a CPU split its cores (unless the user set the threads): oversubscribed
    # threads slow every run down.
    cpu_share = {}
    if parallel > 1 and not gpus and "OMP_NUM_THREADS" not in os.environ:
        cpu_share = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel))}
    failed: list[Task] = []

    def work(task: Task) -> None:
        with lock:
            gpu = free.pop(0) if free else None
        extra = {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else dict(cpu_share)
        start = time.time()
        try:
            rc = run_task(expansion, task, extra)
        finally:
            with lock:
                if gpu is not None:
                    free.append(gpu)
        progress.done(task, time.time() - start, rc)
        if rc != 0:
            with lock:
                failed.append(task)

    print(
        f"{expansion.grid.name}: {len(todo1)} Phase 1 runs and {len(todo2)} cells to run "
        f"({len(expansion.phase1) - len(todo1)} and {len(expansion.cells) - len(todo2)} "
        f"finished); logs in {expansion.grid.output_dir / 'logs'}",
        flush=True,
    )
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(work, todo1))
    runnable = []
    for cell in todo2:
        if cell.phase1 is not None and not cell.phase1.done:
            print(f"skipped {cell.id}: its g_phi {cell.phase1.id} did not finish", flush=True)
            failed.append(cell)
        else:
            runnable.append(cell)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(work, runnable))
    return failed


# --------------------------------------------------------------------------------------
# SLURM
# --------------------------------------------------------------------------------------


def sbatch_script(
    name: str, task_ids: Sequence[str], grid_path: Path, log_dir: Path, options: list[str]
) -> str:
    """A job array with one task per id; each runs `run_experiments.sh GRID --task ID`."""
    ids = " ".join(shlex.quote(t) for t in task_ids)
    header = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --array=0-{len(task_ids) - 1}",
        f"#SBATCH --output={log_dir}/%x_%A_%a.log",
        *(f"#SBATCH {o}" for o in options),
    ]
    body = [
        f"TASKS=({ids})",
        f"cd {shlex.quote(str(REPO))}",
        f"exec bash run_experiments.sh {shlex.quote(str(grid_path))} "
        '--task "${TASKS[$SLURM_ARRAY_TASK_ID]}"',
    ]
    return "\n".join([*header, "", *body]) + "\n"


def write_slurm(expansion: Expansion, options: list[str]) -> tuple[Path, int]:
    """sbatch scripts for the unfinished tasks and a submit.sh that submits them: one array
    of the Phase 1 runs, then one array of cells per g_phi, each depending (afterok) on
    its own Phase 1 task only; cells that need no unfinished g_phi depend on nothing.
    Returns (submit.sh, number of arrays)."""
    grid = expansion.grid
    folder = grid.output_dir / "slurm"
    logs = grid.output_dir / "logs" / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.sbatch"):
        old.unlink()  # scripts of an earlier submission: only the unfinished are written
    todo1 = [t for t in expansion.phase1 if not t.done]
    index = {t.id: i for i, t in enumerate(todo1)}
    groups: dict[str | None, list[Cell]] = {}
    for cell in expansion.cells:
        if not cell.done:
            key = cell.phase1.id if cell.phase1 and not cell.phase1.done else None
            groups.setdefault(key, []).append(cell)
    grid_path = grid.path.resolve()
    submit = [
        "#!/bin/bash",
        "# Submit this grid's unfinished tasks (written by run_experiments.py).",
        "set -euo pipefail",
        f"cd {shlex.quote(str(folder))}",
    ]
    arrays = 0
    if todo1:
        (folder / "phase1.sbatch").write_text(
            sbatch_script(f"{grid.name}-p1", [t.id for t in todo1], grid_path, logs, options)
        )
        submit.append("P1=$(sbatch --parsable phase1.sbatch)")
        submit.append('echo "phase 1: job $P1"')
        arrays += 1
    for k, (key, cells) in enumerate(groups.items()):
        name = f"phase2_{k:03d}.sbatch"
        script = sbatch_script(f"{grid.name}-p2", [c.id for c in cells], grid_path, logs, options)
        (folder / name).write_text(script)
        dep = f"--dependency=afterok:${{P1}}_{index[key]} " if key is not None else ""
        what = f"after g_phi {key}" if key else "no g_phi to wait for"
        submit.append(
            f'echo "{name}: {len(cells)} cells, {what}: job $(sbatch --parsable {dep}{name})"'
        )
        arrays += 1
    path = folder / "submit.sh"
    path.write_text("\n".join(submit) + "\n")
    path.chmod(0o755)
    return path, arrays


def slurm_options(args: argparse.Namespace) -> list[str]:
    options = [f"--cpus-per-task={args.cpus_per_task}", f"--time={args.time}"]
    if args.gpus_per_task:
        options.append(f"--gres=gpu:{args.gpus_per_task}")
    return options + list(args.sbatch_option or [])


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bash run_experiments.sh", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("grid", nargs="?", default=str(DEMO_GRID), help="grid file (default: demo)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry_run", action="store_true", help="list the tasks; run nothing")
    mode.add_argument("--slurm", action="store_true", help="write the SLURM job arrays")
    mode.add_argument("--report", action="store_true", help="tables and plots only")
    mode.add_argument("--task", help="run one task by id (what each SLURM array task does)")
    p.add_argument("--submit", action="store_true", help="with --slurm: submit them too")
    p.add_argument("--parallel", type=int, default=1, help="tasks at a time (locally)")
    p.add_argument("--gpus", default="", help="GPU ids for the local workers, e.g. 0,1,2,3")
    p.add_argument("--gpus_per_task", type=int, default=1, help="SLURM: GPUs per task (0: none)")
    p.add_argument("--cpus_per_task", type=int, default=8, help="SLURM: CPUs per task")
    p.add_argument("--time", default="24:00:00", help="SLURM: time limit per task")
    p.add_argument(
        "--sbatch_option", action="append", help="SLURM: another #SBATCH line, e.g. "
        "--sbatch_option=--partition=gpu (repeatable)",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.submit and not args.slurm:
        raise SystemExit("error: --submit goes with --slurm")
    if args.parallel < 1:
        raise SystemExit(f"error: --parallel must be >= 1, got {args.parallel}")
    try:
        expansion = expand(load_grid(args.grid))
    except GridError as exc:
        raise SystemExit(f"error: {exc}") from None
    from training.grid_report import write_report

    if args.dry_run:
        print(dry_run(expansion))
        return 0
    if args.report:
        write_report(expansion)
        return 0
    if args.task:
        tasks = {t.id: t for t in (*expansion.phase1, *expansion.cells)}
        if args.task not in tasks:
            raise SystemExit(f"error: no task {args.task!r} in {args.grid} (see --dry_run)")
        task = tasks[args.task]
        if task.done:
            print(f"{task.id} has finished; nothing to run")
            return 0
        return run_task(expansion, task)
    if args.slurm:
        submit, arrays = write_slurm(expansion, slurm_options(args))
        print(f"wrote {arrays} job array(s) and {submit}")
        if args.submit and shutil.which("sbatch"):
            return subprocess.run(["bash", str(submit)]).returncode
        how = "sbatch is not on this machine's PATH: " if args.submit else ""
        print(f"{how}submit them with `bash {submit}` on the cluster's login node")
        return 0
    gpus = [g for g in args.gpus.split(",") if g]
    failed = run_local(expansion, args.parallel, gpus)
    write_report(expansion)
    if failed:
        listing = "\n  ".join(f"{t.id} (log {log_path(expansion, t)})" for t in failed)
        print(f"{len(failed)} task(s) did not finish:\n  {listing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
