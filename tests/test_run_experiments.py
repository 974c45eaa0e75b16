"""Experiment grids (training/grids.py, run_experiments.py, grid_report.py): expansion and
deduplication, bad grid files, the SLURM arrays and their dependency graph without a
cluster, the tables (bold, underline, seeds, paired tests) from known results, and a tiny
grid end to end: run, rerun (trains nothing, same tables), killed mid-cell and resumed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scipy.stats import ttest_rel

from tests.conftest import REPO
from training import run_experiments
from training.grid_report import gather, tables
from training.grids import GridError, expand, load_grid

TINY_PHASE1 = {
    "IMAGE_SIZE": 64, "EPOCHS": 1, "NUM_WORKERS": 0, "BACKBONE": "test_resnet",
    "PRETRAINED": "false", "SAMPLES_PER_IMAGE": 2, "SAMPLES_PER_IMAGE_VAL": 2,
    "BATCH_SIZE": 8, "WEAK_EPOCHS": 1, "WEAK_SAVE_EPOCHS": 1, "WEAK_BATCH_SIZE": 4,
}  # fmt: skip
TINY_PHASE2 = {
    "IMAGE_SIZE": 64, "EPOCHS": 2, "NUM_WORKERS": 0, "SEG_ENCODER": "resnet18",
    "ENCODER_WEIGHTS": "none", "DECODER_CHANNELS": [16, 8, 8, 8, 8], "BATCH_SIZE_LABELED": 4,
    "BATCH_SIZE_UNLABELED": 4, "LAMBDA_WARMUP_PL_QW": 0, "LAMBDA_RAMPUP_PL_QW": 1,
    "MIXED_PRECISION": "no",
}  # fmt: skip


def toml_value(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def write_grid(path: Path, body: dict, datasets: list[dict], axes: dict | None = None) -> Path:
    """A grid file from plain dicts (the format users write by hand)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in body.items() if not isinstance(v, dict)]
    for table in ("phase1", "phase2"):
        values = body.get(table, {})
        lines += [f"[{table}]", *(f"{k} = {toml_value(v)}" for k, v in values.items())]
    for ds in datasets:
        lines.append("[[datasets]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in ds.items() if not isinstance(v, dict)]
        for table in ("phase1", "phase2"):
            if table in ds:
                inner = ", ".join(f"{k} = {toml_value(v)}" for k, v in ds[table].items())
                lines.append(f"{table} = {{ {inner} }}")
    for phase, values in (axes or {}).items():
        lines.append(f"[axes.{phase}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def sweep_grid(tmp_path: Path) -> Path:
    return write_grid(
        tmp_path / "sweep.toml",
        {"name": "sweep", "output_dir": str(tmp_path / "out"),
         "methods": ["SUP", "ours_pl_qw", "ours_qar"], "seg_models": ["unetpp"], "seeds": [1, 2]},
        [{"name": "A", "TRAIN_CSV": "a.csv", "phase2": {"UNLABELED_CSV_5K": "u.csv"}}],
        {"phase1": {"SAMPLES_PER_IMAGE": [2, 3]},
         "phase2": {"LAMBDA_FINAL_PL_QW_VALUE": [0.1, 0.2]}},
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# Expansion
# --------------------------------------------------------------------------------------


def test_cells_that_would_be_the_same_run_are_one(tmp_path):
    ex = expand(load_grid(sweep_grid(tmp_path)))
    assert [r.id for r in ex.phase1] == ["A__SAMPLES_PER_IMAGE-2", "A__SAMPLES_PER_IMAGE-3"]
    by_method = {}
    for cell in ex.cells:
        by_method.setdefault(cell.method, []).append(cell)
    # SUP ignores K (no g_phi) and lambda_qw (reads no PL_QW variable): one run per seed.
    assert len(by_method["supervised"]) == 2
    assert all(c.axes == () and c.phase1 is None for c in by_method["supervised"])
    # QAR depends on K, not on PL-QW's lambda; PL-QW on both.
    assert len(by_method["ours_qar"]) == 2 * 2 and len(by_method["ours_pl_qw"]) == 2 * 2 * 2
    assert len(ex.entries) == 3 * 2 * 2 * 2  # every table entry still has its run
    cell = next(
        c for c in by_method["ours_pl_qw"]
        if c.seed == 2
        and dict(c.axes) == {"SAMPLES_PER_IMAGE": "3", "LAMBDA_FINAL_PL_QW_VALUE": "0.2"}
    )  # fmt: skip
    env = cell.env
    assert env["MQ_CHECKPOINT"] == str(tmp_path / "out/mq/A__SAMPLES_PER_IMAGE-3/best.pth")
    assert env["LAMBDA_FINAL_PL_QW_VALUE"] == "0.2" and env["UNLABELED_CSV_5K"] == "u.csv"
    assert (env["METHODS"], env["SEG_MODELS"], env["SEED"], env["RESUME"]) == (
        "ours_pl_qw", "unetpp", "2", "true"
    )  # fmt: skip
    assert cell.run_dir == Path(env["OUTPUT_DIR"]) / env["RUN_NAME"]
    assert "SAMPLES_PER_IMAGE" not in env  # a Phase 1 setting never reaches Phase 2
    p1 = ex.phase1[1].env
    assert p1["SAMPLES_PER_IMAGE"] == "3" and "UNLABELED_CSV_5K" not in p1
    assert p1["WEAK_MODEL_DIR"] != ex.phase1[0].env["WEAK_MODEL_DIR"]  # never shared
    ids = [c.id for c in ex.cells]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"bogus": 1}, "unknown keys ['bogus']"),
        ({"methods": ["nope"]}, "methods: unknown method 'nope'"),
        ({"seg_models": ["nope"]}, "seg_models: unknown segmentation model"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"phase2": {"SEED": 3}}, "SEED are set by the driver"),
        ({"phase1": {"lower": 1}}, "UPPER_CASE"),
    ],
)
def test_bad_grid_files_are_refused_naming_the_key(tmp_path, edit, message):
    body = {"name": "bad", "methods": ["SUP"], "seeds": [1], **edit}
    path = write_grid(tmp_path / "bad.toml", body, [{"name": "A"}])
    with pytest.raises(GridError, match=r"bad\.toml") as err:
        load_grid(path)
    assert message in str(err.value)


def test_empty_axis_and_missing_data_sets_are_refused(tmp_path):
    path = write_grid(tmp_path / "g.toml", {"name": "g"}, [{"name": "A"}], {"phase2": {"LR": []}})
    with pytest.raises(GridError, match=r"axes\.phase2\]\.LR must be a non-empty list"):
        load_grid(path)
    (tmp_path / "h.toml").write_text('name = "h"\n')
    with pytest.raises(GridError, match=r"h\.toml: no \[\[datasets\]\]"):
        load_grid(tmp_path / "h.toml")
    with pytest.raises(GridError, match="grid file not found"):
        load_grid(tmp_path / "absent.toml")


def test_the_shipped_grids_expand_with_the_counts_the_readme_states():
    counts = {}
    for path in sorted((REPO / "training" / "grids").glob("*.toml")):
        ex = expand(load_grid(path))
        counts[path.stem] = (len(ex.phase1), len(ex.cells))
    assert counts["main"] == (5, 14 * 5 * 3 * 3)
    assert counts["demo"] == (1, 2 + 2 * 2)
    assert counts["ablation_K"] == (5, 3 + 2 * 5 * 3)
    assert counts["ablation_lambda_qw"] == (1, 3 + 5 * 3)


# --------------------------------------------------------------------------------------
# SLURM
# --------------------------------------------------------------------------------------


def test_slurm_arrays_depend_on_their_own_g_phi_and_skip_what_finished(
    tmp_path, capsys, monkeypatch
):
    grid = sweep_grid(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))  # no sbatch here
    assert run_experiments.main([str(grid), "--slurm", "--submit", "--gpus_per_task", "2"]) == 0
    out = capsys.readouterr().out
    assert "sbatch is not on this machine's PATH" in out and "submit.sh" in out
    folder = tmp_path / "out" / "slurm"
    p1 = (folder / "phase1.sbatch").read_text()
    assert "#SBATCH --array=0-1" in p1 and "#SBATCH --gres=gpu:2" in p1
    assert "TASKS=(A__SAMPLES_PER_IMAGE-2 A__SAMPLES_PER_IMAGE-3)" in p1
    assert '--task "${TASKS[$SLURM_ARRAY_TASK_ID]}"' in p1
    submit = (folder / "submit.sh").read_text()
    ex = expand(load_grid(grid))
    groups = sorted(folder.glob("phase2_*.sbatch"))
    assert len(groups) == 3  # cells of g_phi 0, of g_phi 1, and those needing none
    for path in groups:
        text = path.read_text()
        ids = text.split("TASKS=(")[1].split(")")[0].split()
        cells = [c for c in ex.cells if c.id in ids]
        assert len(cells) == len(ids) and f"--array=0-{len(ids) - 1}" in text
        needs = {c.phase1.id if c.phase1 else None for c in cells}
        assert len(needs) == 1
        line = next(ln for ln in submit.splitlines() if path.name in ln)
        need = needs.pop()
        if need is None:
            assert "--dependency" not in line
        else:
            k = [r.id for r in ex.phase1].index(need)
            assert f"--dependency=afterok:${{P1}}_{k} {path.name}" in line
    # Finish g_phi 0 and one cell: only the rest is written, g_phi 0's cells wait on nothing.
    ex.phase1[0].run_dir.mkdir(parents=True)
    (ex.phase1[0].run_dir / "test_metrics.json").write_text("{}")
    ex.cells[0].run_dir.mkdir(parents=True)
    (ex.cells[0].run_dir / "results.json").write_text("{}")
    run_experiments.main([str(grid), "--slurm"])
    p1 = (folder / "phase1.sbatch").read_text()
    assert "#SBATCH --array=0-0" in p1 and "TASKS=(A__SAMPLES_PER_IMAGE-3)" in p1
    written = " ".join(p.read_text() for p in folder.glob("phase2_*.sbatch"))
    assert ex.cells[0].id not in written
    submit = (folder / "submit.sh").read_text()
    assert submit.count("--dependency=afterok:${P1}_0") == 1 and "${P1}_1" not in submit


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def fake_results(cell, dice: float) -> None:
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    test = {"dice": {"mean": dice, "std": 0.1, "n": 4}, "jaccard": {"mean": dice - 0.1}}
    record = {"method": cell.method, "seg_model": cell.model, "seed": cell.seed, "test": test}
    (cell.run_dir / "results.json").write_text(json.dumps({**record, "dataset": cell.dataset}))


def test_tables_from_known_results(tmp_path):
    path = write_grid(
        tmp_path / "t.toml",
        {"name": "t", "output_dir": str(tmp_path / "out"),
         "methods": ["SUP", "PL-C", "ours_pl_qw", "ours_qar"], "seg_models": ["UP"],
         "seeds": [1, 2, 3]},
        [{"name": "A"}, {"name": "B"}],
    )  # fmt: skip
    ex = expand(load_grid(path))
    dice = {"supervised": 0.70, "pseudo_label_sample_reweighting": 0.72, "ours_pl_qw": 0.80,
            "ours_qar": 0.75}  # fmt: skip
    offsets = {1: 0.0, 2: 0.02, 3: -0.01}
    for cell in ex.cells:
        if cell.dataset == "B" and cell.method == "ours_qar" and cell.seed == 3:
            continue  # unfinished: B's QAR has two seeds
        bump = 0.01 * cell.seed if cell.method == "ours_pl_qw" else 0.0
        fake_results(cell, dice[cell.method] + offsets[cell.seed] + bump)
    md, tex, rows = tables(ex, gather(ex))
    dice_table = md.split("Paired")[0]
    lines = {
        ln.split(" | ")[0].lstrip("| "): ln for ln in dice_table.splitlines() if ln.startswith("| ")
    }
    # Seeds 1-3 of PL-QW: 81, 84, 82; QAR: 75, 77, 74; PL-C: 72, 74, 71; SUP: 70, 72, 69.
    assert lines["PL-QW"].count("**82.3 ± 1.5 (3)**") == 2  # best in A and B: bold
    assert "<u>75.3 ± 1.5 (3)</u>" in lines["QAR"]  # second: underlined
    assert "| 70.3 ± 1.5 (3) |" in lines["SUP"] and "| 72.3 ± 1.5 (3) |" in lines["PL-C"]
    assert lines["QAR"].endswith("<u>76.0 ± 1.4 (2)</u> |")  # B: QAR's seed 3 unfinished
    assert "\\textbf{$82.3 \\pm 1.5$ (3)}" in tex and "\\underline{$75.3 \\pm 1.5$ (3)}" in tex
    row = next(r for r in rows if r["dataset"] == "A" and r["method"] == "PL-QW")
    sup = [0.70 + offsets[s] for s in (1, 2, 3)]
    plqw = [0.80 + offsets[s] + 0.01 * s for s in (1, 2, 3)]
    plc = [0.72 + offsets[s] for s in (1, 2, 3)]
    assert row["p_vs_sup"] == pytest.approx(ttest_rel(plqw, sup).pvalue)
    assert row["p_vs_base"] == pytest.approx(ttest_rel(plqw, plc).pvalue)
    assert row["base"] == "PL-C" and row["num_seeds"] == 3
    assert row["dice_mean"] == pytest.approx(sum(plqw) / 3)
    # QAR - SUP is constant over seeds: no t-test (NaN), shown as a dash
    qar = next(r for r in rows if r["dataset"] == "A" and r["method"] == "QAR")
    assert math.isnan(qar["p_vs_sup"])
    assert "| SUP | – / – | – / – |" in md


# --------------------------------------------------------------------------------------
# End to end on a tiny grid
# --------------------------------------------------------------------------------------


def tiny_grid(tmp_path: Path, tiny_demo) -> Path:
    return write_grid(
        tmp_path / "tiny.toml",
        {"name": "tiny", "output_dir": str(tmp_path / "out"), "methods": ["SUP", "PL-QW"],
         "seg_models": ["UP"], "seeds": [1], "phase1": TINY_PHASE1, "phase2": TINY_PHASE2},
        [{"name": "tiny", "TRAIN_CSV": str(tiny_demo["train"]), "VAL_CSV": str(tiny_demo["val"]),
          "TEST_CSV": str(tiny_demo["test"]),
          "phase2": {"UNLABELED_CSV_5K": str(tiny_demo["unlabeled"])}}],
        {"phase2": {"LAMBDA_FINAL_PL_QW_VALUE": [0.25, 1.0]}},
    )  # fmt: skip


def driver(grid: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = ["bash", str(REPO / "run_experiments.sh"), str(grid), *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, **kwargs,
    )  # fmt: skip


@pytest.mark.slow
def test_a_tiny_grid_runs_reruns_nothing_and_resumes_a_killed_cell(tmp_path, tiny_demo):
    grid = tiny_grid(tmp_path, tiny_demo)
    ex = expand(load_grid(grid))
    assert (len(ex.phase1), len(ex.cells)) == (1, 3)
    # Start, and kill the driver (its whole process group) once the first PL-QW cell has
    # written its first latest.pth.
    first = next(c for c in ex.cells if c.method == "ours_pl_qw")
    proc = driver(grid)
    deadline = time.time() + 600
    while not (first.run_dir / "latest.pth").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (first.run_dir / "results.json").exists()
    finished = {c.id: (c.run_dir / "results.json").stat().st_mtime for c in ex.cells if c.done}
    out = subprocess.run(
        ["bash", str(REPO / "run_experiments.sh"), str(grid)], capture_output=True, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert all(c.done for c in ex.cells) and all(r.done for r in ex.phase1)
    # No finished cell ran again; the killed one resumed from its checkpoint.
    for cell_id, mtime in finished.items():
        cell = next(c for c in ex.cells if c.id == cell_id)
        assert (cell.run_dir / "results.json").stat().st_mtime == mtime
    log = run_experiments.log_path(ex, first).read_text()
    assert f"resuming {first.run_dir} after epoch 1" in log, log[-2000:]
    report = tmp_path / "out" / "report"
    md = (report / "results.md").read_text()
    assert "| SUP |" in md and "| PL-QW |" in md and "LAMBDA_FINAL_PL_QW_VALUE=1.0" in md
    plots = list((report / "plots").glob("*.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 5000
    # A second run trains nothing and writes the same tables.
    again = subprocess.run(
        [sys.executable, str(REPO / "training" / "run_experiments.py"), str(grid)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 Phase 1 runs and 0 cells to run" in again.stdout
    assert (report / "results.md").read_text() == md
    assert "[done]" in run_experiments.dry_run(ex)


def test_progress_estimates_each_kind_of_task_by_its_own_times(tmp_path):
    ex = expand(load_grid(sweep_grid(tmp_path)))
    lines = []
    todo = [*ex.phase1, *ex.cells]
    progress = run_experiments.Progress(todo, workers=2, out=lines.append)
    progress.done(ex.phase1[0], 600.0, 0)  # one g_phi: 10 min; nothing known of cells yet
    assert progress.eta() == pytest.approx((1 + len(ex.cells)) * 600.0 / 2)
    progress.done(ex.cells[0], 60.0, 0)
    assert progress.eta() == pytest.approx((1 * 600.0 + (len(ex.cells) - 1) * 60.0) / 2)
    assert lines[-1].startswith(f"[2/{len(todo)}] {ex.cells[0].id} done in 1m00s; ETA ")
    progress.done(ex.cells[1], 5.0, 3)
    assert "FAILED (exit 3)" in lines[-1]
