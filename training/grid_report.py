"""Tables and plots of an experiment grid from its finished runs, re-running nothing
(docs/METHOD.md §10). Written to OUTPUT_DIR/report/ by `run_experiments.sh` after every run
and by `run_experiments.sh GRID --report`:

- results.md / results.tex: the paper's layout, one table per architecture: rows methods
  (registry order), columns data sets (and the swept axis values); test Dice in percent,
  mean ± sample std over seeds of each run's mean, the number of seeds in brackets; the
  best mean of a column in bold, the second underlined. Then the paired tests: for each
  method, a paired t-test over seeds (scipy.stats.ttest_rel on the per-run mean Dice)
  against SUP and against its base without quality guidance (`quality_base`).
- results.csv: one row per (data set, axes, model, method), unrounded, with both p-values.
- plots/*.png: for each swept axis, Dice against its values, one line per method, error
  bars the std over seeds (matplotlib).
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.seg_models import seg_model_acronym
from training.collect_results import ResultsError, load_run
from training.grids import Expansion
from training.methods import METHODS

METRICS = ("dice", "jaccard")
SUP = "supervised"


@dataclass(frozen=True)
class Entry:
    """One table cell's runs: the test score of each seed that finished."""

    scores: dict[int, dict[str, float]]  # seed -> metric -> per-run test mean

    def values(self, metric: str, seeds: list[int] | None = None) -> np.ndarray:
        keys = sorted(self.scores) if seeds is None else seeds
        return np.array([self.scores[s][metric] for s in keys], dtype=np.float64)

    def stats(self, metric: str) -> tuple[float, float, int]:
        """(mean, sample std, seeds); std NaN with one seed, mean NaN with none."""
        v = self.values(metric)
        if len(v) == 0:
            return math.nan, math.nan, 0
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def paired_p(a: Entry, b: Entry, metric: str = "dice") -> float:
    """Two-sided paired t-test over the seeds both entries have; NaN with under 2 pairs or
    no variation of the differences."""
    from scipy.stats import ttest_rel

    seeds = sorted(set(a.scores) & set(b.scores))
    if len(seeds) < 2:
        return math.nan
    x, y = a.values(metric, seeds), b.values(metric, seeds)
    if np.allclose(x - y, (x - y)[0]):
        return math.nan
    return float(ttest_rel(x, y).pvalue)


def gather(expansion: Expansion) -> dict[tuple, Entry]:
    """(dataset, axes, model, method) -> Entry, from the results.json of finished cells."""
    cells = {c.id: c for c in expansion.cells}
    scores: dict[tuple, dict[int, dict[str, float]]] = defaultdict(dict)
    for (dataset, axes, model, method, seed), cell_id in expansion.entries.items():
        cell = cells[cell_id]
        path = cell.run_dir / "results.json"
        key = (dataset, axes, model, method)
        scores.setdefault(key, {})
        if not path.is_file():
            continue
        try:
            run = load_run(path)
        except ResultsError as exc:
            raise SystemExit(f"error: {exc}") from None
        scores[key][seed] = {m: float(run.test[m]["mean"]) for m in METRICS if m in run.test}
    return {k: Entry(v) for k, v in scores.items()}


def _axis_combinations(expansion: Expansion) -> list[tuple]:
    """The grid's combinations of axis values, in the grid file's order."""
    combos = {axes for (_, axes, _, _, _) in expansion.entries}
    return sorted(combos, key=_axis_order(expansion.grid))


def _columns(expansion: Expansion) -> list[tuple[str, tuple]]:
    combos = _axis_combinations(expansion)
    return [(d.name, axes) for d in expansion.grid.datasets for axes in combos]


def _axis_order(grid):
    order = {**grid.axes1, **grid.axes2}

    def key(axes: tuple) -> tuple:
        return tuple(order[k].index(v) for k, v in axes)

    return key


def column_label(dataset: str, axes: tuple) -> str:
    return " ".join([dataset, *(f"{k}={v}" for k, v in axes)])


def _ranks(means: list[float]) -> tuple[float | None, float | None]:
    """The best and second-best distinct means (rounded as shown)."""
    shown = sorted({round(m * 100, 1) for m in means if not math.isnan(m)}, reverse=True)
    return (shown[0] if shown else None), (shown[1] if len(shown) > 1 else None)


def _fmt_p(p: float) -> str:
    return "–" if math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def tables(expansion: Expansion, entries: dict[tuple, Entry]) -> tuple[str, str, list[dict]]:
    """(Markdown, LaTeX, CSV rows) of the grid's results."""
    grid = expansion.grid
    columns = _columns(expansion)
    methods = [m for m in METHODS if m in grid.methods]
    md = [f"# {grid.name}", ""]
    if grid.description:
        md += [grid.description, ""]
    tex: list[str] = []
    rows: list[dict] = []
    for model in grid.seg_models:
        acr = seg_model_acronym(model)
        labels = [column_label(d, a) for d, a in columns]
        md += [f"## {acr}: test Dice (%), mean ± std over seeds (seeds)", ""]
        md += ["| Method | " + " | ".join(labels) + " |"]
        md += ["|" + "|".join([":--"] + [":-:"] * len(columns)) + "|"]
        tex += [
            f"% {grid.name}, {acr}: test Dice (%), mean $\\pm$ std over seeds",
            "\\begin{tabular}{l" + "c" * len(columns) + "}",
            "\\toprule",
            "Method & " + " & ".join(_tex(label) for label in labels) + " \\\\",
            "\\midrule",
        ]
        ranks = [
            _ranks([entries[(d, a, model, m)].stats("dice")[0] for m in methods])
            for d, a in columns
        ]
        for method in methods:
            md_row, tex_row = [METHODS[method].acronym], [_tex(METHODS[method].acronym)]
            for (dataset, axes), (best, second) in zip(columns, ranks):
                entry = entries[(dataset, axes, model, method)]
                mean, std, n = entry.stats("dice")
                if n == 0:
                    md_row.append("–")
                    tex_row.append("--")
                    continue
                std_text = "–" if math.isnan(std) else f"{std * 100:.1f}"
                text = f"{mean * 100:.1f} ± {std_text} ({n})"
                tex_text = f"${mean * 100:.1f} \\pm {std_text.replace('–', '--')}$ ({n})"
                if round(mean * 100, 1) == best:
                    text, tex_text = f"**{text}**", f"\\textbf{{{tex_text}}}"
                elif round(mean * 100, 1) == second:
                    text, tex_text = f"<u>{text}</u>", f"\\underline{{{tex_text}}}"
                md_row.append(text)
                tex_row.append(tex_text)
            md.append("| " + " | ".join(md_row) + " |")
            tex.append(" & ".join(tex_row) + " \\\\")
        tex += ["\\bottomrule", "\\end{tabular}", ""]
        md += ["", "Paired t-test over seeds (Dice), p-values: vs SUP / vs the base method", ""]
        md += ["| Method | " + " | ".join(labels) + " |"]
        md += ["|" + "|".join([":--"] + [":-:"] * len(columns)) + "|"]
        for method in methods:
            base = METHODS[method].quality_base
            row = [METHODS[method].acronym]
            for dataset, axes in columns:
                entry = entries[(dataset, axes, model, method)]
                p_sup = p_base = math.nan
                if method != SUP and (sup := entries.get((dataset, axes, model, SUP))):
                    p_sup = paired_p(entry, sup)
                if base and (b := entries.get((dataset, axes, model, base))):
                    p_base = paired_p(entry, b)
                row.append(f"{_fmt_p(p_sup)} / {_fmt_p(p_base)}")
                record = {"dataset": dataset, **dict(axes), "model": acr}
                record["method"] = METHODS[method].acronym
                record["seeds"] = " ".join(map(str, sorted(entry.scores)))
                for metric in METRICS:
                    m, s, n = entry.stats(metric)
                    record[f"{metric}_mean"], record[f"{metric}_std"] = m, s
                record["num_seeds"] = len(entry.scores)
                record["p_vs_sup"], record["p_vs_base"] = p_sup, p_base
                record["base"] = METHODS[base].acronym if base else ""
                rows.append(record)
            md.append("| " + " | ".join(row) + " |")
        md.append("")
    md.append(
        "Best mean per column in bold, second underlined; (n) seeds finished; std is the "
        "sample std (ddof 1) of the per-run means. A method without g_phi ignores the Phase 1 "
        "axes and one that reads no swept variable ignores it: its runs repeat across those "
        "columns."
    )
    return "\n".join(md) + "\n", "\n".join(tex), rows


def _tex(text: str) -> str:
    return text.replace("_", "\\_").replace("&", "\\&").replace("%", "\\%")


def plots(expansion: Expansion, entries: dict[tuple, Entry], folder: Path) -> list[Path]:
    """For each swept axis with two or more values: Dice against the axis, one line per
    method, error bars the std over seeds; one figure per data set, model and combination
    of the other axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = expansion.grid
    axes_all = {**grid.axes1, **grid.axes2}
    written = []
    combos = _axis_combinations(expansion)
    for axis, values in axes_all.items():
        if len(values) < 2:
            continue
        numeric = all(_is_number(v) for v in values)
        xs = [float(v) for v in values] if numeric else list(range(len(values)))
        others = sorted({tuple((k, v) for k, v in c if k != axis) for c in combos})
        for ds in grid.datasets:
            for model in grid.seg_models:
                for rest in others:
                    fig, ax = plt.subplots(figsize=(5.5, 3.8))
                    drawn = False
                    for method in (m for m in METHODS if m in grid.methods):
                        means, stds = [], []
                        for v in values:
                            combo = _merge(rest, axis, v, axes_all)
                            m, s, _ = entries[(ds.name, combo, model, method)].stats("dice")
                            means.append(m * 100)
                            stds.append(0.0 if math.isnan(s) else s * 100)
                        if all(math.isnan(m) for m in means):
                            continue
                        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3,
                                    label=METHODS[method].acronym)  # fmt: skip
                        drawn = True
                    if not drawn:
                        plt.close(fig)
                        continue
                    if not numeric:
                        ax.set_xticks(xs, values)
                    extra = "".join(f", {k}={v}" for k, v in rest)
                    ax.set(xlabel=axis, ylabel="test Dice (%)",
                           title=f"{ds.name}, {seg_model_acronym(model)}{extra}")  # fmt: skip
                    ax.grid(alpha=0.3)
                    ax.legend(fontsize=8)
                    fig.tight_layout()
                    parts = [
                        axis,
                        ds.name,
                        seg_model_acronym(model),
                        *(f"{k}-{v}" for k, v in rest),
                    ]
                    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts))
                    path = folder / f"{slug}.png"
                    fig.savefig(path, dpi=120)
                    plt.close(fig)
                    written.append(path)
    return written


def _merge(rest: tuple, axis: str, value: str, order: dict) -> tuple:
    pairs = dict(rest) | {axis: value}
    return tuple((k, pairs[k]) for k in order if k in pairs)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_report(expansion: Expansion) -> Path:
    """Write OUTPUT_DIR/report/ (tables, CSV, LaTeX, plots); returns the Markdown path."""
    folder = expansion.grid.output_dir / "report"
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    entries = gather(expansion)
    md, tex, rows = tables(expansion, entries)
    written = plots(expansion, entries, folder / "plots")
    scatter = [t.run_dir / "test_scatter.png" for t in expansion.phase1]
    scatter = [p for p in scatter if p.is_file()]
    if scatter:
        md += "\ng_phi test scatter plots: " + ", ".join(str(p) for p in scatter) + "\n"
    (folder / "results.md").write_text(md)
    (folder / "results.tex").write_text(tex)
    with open(folder / "results.csv", "w", newline="") as f:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(md, end="")
    print(f"wrote {folder / 'results.md'}, results.csv, results.tex and {len(written)} plot(s)")
    return folder / "results.md"
