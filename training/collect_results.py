"""Collect every results.json under a folder into the paper's results table.

    python training/collect_results.py --output_dir ./checkpoints/methods
    python training/collect_results.py --output_dir ./checkpoints/methods \\
        --markdown results.md --csv results.csv

Rows are methods in the paper's order (the method registry's: SUP, PL-T, PL-C, MT, UA-MT,
MT-QW, ICT, ICT-QW, CPS, CPS-QW, CL, CL-QW, QAR, PL-QW; others after, alphabetically);
columns are the test Dice and Jaccard, mean +- std, for each segmentation model (the model
table's order: UP, AU, SU). One table per data set; a multi-task run (VerSemi, Pooled)
adds a row to the table of each of its tasks, tested with that task's prompt.

A cell with one run shows the mean and the population std over that run's test images
(what training/train_semisup.py writes). A cell with several runs of the same (method,
model, data set), i.e. several seeds, shows the mean and the sample std (ddof 1) across
runs of the per-run mean, marked with a dagger and explained in a footnote. The best mean
of each column is in bold. Scores are shown in percent (`--scale fraction` for 0-1). The
CSV has one row per (data set, method, model), numbers unrounded on the 0-1 scale.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import numpy as np

from models.seg_models import SEG_MODELS
from training.methods import every_method

# Rows and columns in the paper's order, from the method registry and the model table.
ALL_METHODS = every_method()  # the multi-task ones (VerSemi) after
METHOD_ORDER = tuple(cls.acronym for cls in ALL_METHODS.values())
METHOD_ACRONYMS = {name: cls.acronym for name, cls in ALL_METHODS.items()}  # old results.json
MODEL_ORDER = tuple(spec.acronym for spec in SEG_MODELS.values())
MODEL_ACRONYMS = {name: spec.acronym for name, spec in SEG_MODELS.items()}
METRIC_LABELS = {
    "dice": "Dice",
    "jaccard": "Jaccard",
    "soft_dice": "Soft Dice",
    "pixel_accuracy": "Pixel acc.",
    "f1": "F1",
}
DEFAULT_METRICS = ("dice", "jaccard")
MULTI_RUN_MARK = "†"
SCALES = ("percent", "fraction")


class ResultsError(ValueError):
    """A results folder or file that cannot be tabulated; the message names it."""


@dataclass(frozen=True)
class Run:
    """The test scores of one training run (one results.json)."""

    path: Path
    dataset: str
    method: str  # acronym
    model: str  # acronym
    seed: int | None
    test: dict[str, dict[str, float]]
    best_epoch: int | None = None  # 0-based, as in results.json
    lambda_at_best: float | None = None

    @property
    def selection(self) -> str:
        """'epoch (lambda)' of the selected checkpoint, 1-based epoch as the console shows."""
        if self.best_epoch is None:
            return "?"
        lam = "" if self.lambda_at_best is None else f" (λ {self.lambda_at_best:.3g})"
        return f"{self.best_epoch + 1}{lam}"


@dataclass
class Cell:
    """One (data set, method, model) entry: mean and std per metric."""

    runs: list[Run] = field(default_factory=list)

    @property
    def multi_run(self) -> bool:
        return len(self.runs) > 1

    def stats(self, metric: str) -> tuple[float, float] | None:
        """(mean, std): per-image std of one run, or across-run std of the run means."""
        if any(metric not in r.test for r in self.runs):
            return None
        if not self.multi_run:
            s = self.runs[0].test[metric]
            return float(s["mean"]), float(s.get("std", float("nan")))
        means = np.array([r.test[metric]["mean"] for r in self.runs], dtype=np.float64)
        return float(means.mean()), float(means.std(ddof=1))

    def num_images(self) -> list[int]:
        return [int(r.test.get("dice", {}).get("n", -1)) for r in self.runs]


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def find_results(output_dir: str | Path) -> list[Path]:
    """Every results.json under `output_dir` (sorted); an error if there is none."""
    root = Path(output_dir)
    if not root.is_dir():
        raise ResultsError(f"--output_dir {root} is not a folder")
    paths = sorted(root.rglob("results.json"))
    if not paths:
        raise ResultsError(
            f"no results.json under {root}: a run writes one into its run folder after its "
            "final test (training/train_semisup.py)"
        )
    return paths


def load_run(path: str | Path) -> Run:
    """Parse one results.json, failing with the file and the missing key named."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    method = data.get("method_acronym") or METHOD_ACRONYMS.get(str(data.get("method", "")))
    if not method:
        raise ResultsError(f"{path}: no 'method_acronym' (nor a known 'method')")
    model = data.get("model_acronym") or MODEL_ACRONYMS.get(str(data.get("seg_model", "")).lower())
    if not model:
        raise ResultsError(f"{path}: no 'model_acronym' (nor a known 'seg_model')")
    test = data.get("test")
    if not isinstance(test, dict) or not test:
        raise ResultsError(f"{path}: no 'test' metrics")
    for metric, s in test.items():
        if not isinstance(s, dict) or "mean" not in s:
            raise ResultsError(f"{path}: test metric {metric!r} lacks a 'mean'")
    seed = data.get("seed")
    best_epoch, lam = data.get("best_epoch"), data.get("lambda_at_best")
    return Run(
        path=path,
        dataset=str(data.get("dataset") or "(unnamed)"),
        method=str(method),
        model=str(model),
        seed=int(seed) if seed is not None else None,
        test=test,
        best_epoch=int(best_epoch) if best_epoch is not None else None,
        lambda_at_best=float(lam) if lam is not None else None,
    )


def load_runs(path: str | Path) -> list[Run]:
    """The runs of one results.json: one, or for a multi-task run (VerSemi, Pooled; its
    "tasks" entry) one per task, named by the task, so that each task's table gets a row
    for it beside the runs trained on that data set alone."""
    run = load_run(path)
    tasks = json.loads(Path(path).read_text()).get("tasks")
    if not tasks:
        return [run]
    out = []
    for name, entry in tasks.items():
        test = entry.get("test") if isinstance(entry, dict) else None
        if not isinstance(test, dict) or not all("mean" in s for s in test.values()):
            raise ResultsError(f"{path}: task {name!r} has no test metrics with a 'mean'")
        out.append(dataclasses.replace(run, dataset=str(name), test=test))
    return out


def group_runs(runs: list[Run]) -> dict[str, dict[tuple[str, str], Cell]]:
    """{dataset: {(method, model): Cell}}. Two runs of the same seed (a re-run under
    another experiment name) would count one seed twice: the newer file is kept and the
    duplicate reported on stderr."""
    by_key: dict[tuple[str, str, str, int | None], Run] = {}
    unseeded: list[Run] = []
    for run in runs:
        if run.seed is None:
            unseeded.append(run)
            continue
        key = (run.dataset, run.method, run.model, run.seed)
        old = by_key.get(key)
        if old is not None:
            keep, drop = sorted((old, run), key=lambda r: r.path.stat().st_mtime, reverse=True)
            print(
                f"warning: {drop.path} repeats seed {run.seed} of {run.method}/{run.model}/"
                f"{run.dataset} (also in {keep.path}); using the newer {keep.path}",
                file=sys.stderr,
            )
            run = keep
        by_key[key] = run
    table: dict[str, dict[tuple[str, str], Cell]] = defaultdict(lambda: defaultdict(Cell))
    for run in [*by_key.values(), *unseeded]:
        table[run.dataset][(run.method, run.model)].runs.append(run)
    return {d: dict(cells) for d, cells in sorted(table.items())}


def _ordered(values: set[str], order: tuple[str, ...]) -> list[str]:
    return [v for v in order if v in values] + sorted(values - set(order))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def markdown_table(
    dataset: str,
    cells: dict[tuple[str, str], Cell],
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    scale: str = "percent",
    digits: int | None = None,
) -> str:
    """One data set's table: rows methods, columns (model, metric), 'mean ± std' in percent
    (2 decimals) or as fractions (`scale="fraction"`, 3 decimals)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    factor = 100.0 if scale == "percent" else 1.0
    if digits is None:
        digits = 2 if scale == "percent" else 3
    methods = _ordered({m for m, _ in cells}, METHOD_ORDER)
    models = _ordered({m for _, m in cells}, MODEL_ORDER)
    columns = [(model, metric) for model in models for metric in metrics]
    best: dict[tuple[str, str], float] = {}
    for col in columns:
        means = [
            s[0]
            for method in methods
            if (c := cells.get((method, col[0]))) and (s := c.stats(col[1]))
        ]
        if means:
            best[col] = max(means)

    header = ["Method", *(f"{model} {METRIC_LABELS.get(m, m)}" for model, m in columns)]
    lines = [f"### {dataset}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":--"] + [":-:"] * len(columns)) + "|")
    any_multi = False
    for method in methods:
        row = [method]
        for model, metric in columns:
            cell = cells.get((method, model))
            stats = cell.stats(metric) if cell else None
            if stats is None:
                row.append("–")
                continue
            mean, std = stats[0] * factor, stats[1] * factor
            text = f"{mean:.{digits}f} ± {std:.{digits}f}"
            if round(mean, digits) == round(best[(model, metric)] * factor, digits):
                text = f"**{text}**"
            if cell.multi_run:
                any_multi = True
                text += f"{MULTI_RUN_MARK}"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    notes = [
        f"Test set, threshold 0.5, {'percent' if factor == 100 else '0-1 scale'}. Mean ± "
        "population std over the test images of one run; best mean per column in bold."
    ]
    if any_multi:
        counts = sorted({len(c.runs) for c in cells.values() if c.multi_run})
        notes.append(
            f"{MULTI_RUN_MARK} Several runs (seeds; {', '.join(map(str, counts))} per cell): "
            "mean ± sample std (ddof 1) across runs of the per-run mean."
        )
    lines.append("\n\n".join(notes))  # separate paragraphs once rendered
    return "\n".join([*lines, "", *selection_table(cells, methods, models)]) + "\n"


def selection_table(
    cells: dict[tuple[str, str], Cell], methods: list[str], models: list[str]
) -> list[str]:
    """Each run's validation-best epoch and its mean lambda: a QAR row selected at lambda 0
    is a supervised model under another name (docs/METHOD.md §4.6)."""
    lines = ["| Selected epoch (λ) | " + " | ".join(models) + " |"]
    lines.append("|" + "|".join([":--"] + [":-:"] * len(models)) + "|")
    for method in methods:
        row = [method]
        for model in models:
            cell = cells.get((method, model))
            row.append(", ".join(r.selection for r in cell.runs) if cell else "–")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def csv_rows(
    table: dict[str, dict[tuple[str, str], Cell]], metrics: tuple[str, ...]
) -> list[dict[str, object]]:
    """One row per (data set, method, model), numbers unformatted."""
    rows = []
    for dataset, cells in table.items():
        methods = _ordered({m for m, _ in cells}, METHOD_ORDER)
        models = _ordered({m for _, m in cells}, MODEL_ORDER)
        for method in methods:
            for model in models:
                cell = cells.get((method, model))
                if cell is None:
                    continue
                row: dict[str, object] = {
                    "dataset": dataset,
                    "method": method,
                    "model": model,
                    "num_runs": len(cell.runs),
                    "std_over": "runs" if cell.multi_run else "images",
                    "seeds": " ".join(str(r.seed) for r in cell.runs),
                    "num_test_images": " ".join(map(str, cell.num_images())),
                    "best_epochs": " ".join(str(r.best_epoch) for r in cell.runs),
                    "lambda_at_best": " ".join(str(r.lambda_at_best) for r in cell.runs),
                }
                for metric in metrics:
                    stats = cell.stats(metric)
                    row[f"{metric}_mean"] = stats[0] if stats else ""
                    row[f"{metric}_std"] = stats[1] if stats else ""
                rows.append(row)
    return rows


def collect(
    output_dir: str | Path,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    scale: str = "percent",
    digits: int | None = None,
) -> tuple[str, list[dict[str, object]]]:
    """(Markdown of every data set's table, CSV rows) of the runs under `output_dir`."""
    table = group_runs([r for p in find_results(output_dir) for r in load_runs(p)])
    markdown = "\n".join(
        markdown_table(dataset, cells, metrics, scale, digits) for dataset, cells in table.items()
    )
    return markdown, csv_rows(table, metrics)


def main(argv: list[str] | None = None) -> str:
    """Command line entry point; returns the Markdown it printed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="folder searched for results.json")
    parser.add_argument("--markdown", help="also write the tables to this Markdown file")
    parser.add_argument("--csv", help="also write one row per (data set, method, model) here")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        choices=list(METRIC_LABELS),
        help="test metrics shown per model (default: dice jaccard, as the paper)",
    )
    parser.add_argument(
        "--scale", choices=SCALES, default="percent", help="Markdown scores in percent or 0-1"
    )
    parser.add_argument(
        "--digits", type=int, default=None, help="decimals (default 2 in percent, 3 in 0-1)"
    )
    args = parser.parse_args(argv)
    try:
        markdown, rows = collect(args.output_dir, tuple(args.metrics), args.scale, args.digits)
    except ResultsError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(markdown, end="")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return markdown


if __name__ == "__main__":
    main()
