"""The results table (training/collect_results.py): numbers, order, seeds, errors."""

from __future__ import annotations

import csv
import json
import os

import pytest

from training import collect_results


def write_run(root, name, method, model, dice, jaccard, seed=0, dataset="demo", std=0.1):
    """A results.json as training/train_semisup.py writes it."""
    run = root / name
    run.mkdir(parents=True)
    result = {
        "method": "x",
        "method_acronym": method,
        "seg_model": "x",
        "model_acronym": model,
        "dataset": dataset,
        "seed": seed,
        "experiment_name": name,
        "best_epoch": 3,
        "test": {
            "dice": {"mean": dice, "std": std, "n": 60},
            "jaccard": {"mean": jaccard, "std": std / 2, "n": 60},
            "f1": {"mean": dice, "std": std, "n": 60},
        },
    }
    (run / "results.json").write_text(json.dumps(result))
    return run / "results.json"


def table_rows(markdown: str, table: int = 0) -> list[list[str]]:
    """The rows of the `table`-th Markdown table (0: scores, 1: selected epochs)."""
    tables: list[list[list[str]]] = []
    inside = False
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not inside:
                tables.append([])
            inside = True
            if line.startswith("| "):
                tables[-1].append([c.strip() for c in line.strip("|").split("|")])
        else:
            inside = False
    return tables[table]


def test_selected_epoch_and_lambda_shown(tmp_path):
    """A QAR row selected while lambda was still 0 is visible in the table and the CSV."""
    for seed, lam in ((0, 0.0), (1, 0.01)):
        path = write_run(tmp_path, f"QAR_{seed}", "QAR", "UP", 0.8, 0.7, seed=seed)
        data = json.loads(path.read_text())
        data["lambda_at_best"] = lam
        path.write_text(json.dumps(data))
    write_run(tmp_path, "SUP_0", "SUP", "UP", 0.8, 0.7)  # an older results.json: no lambda
    csv_path = tmp_path / "t.csv"
    markdown = collect_results.main(["--output_dir", str(tmp_path), "--csv", str(csv_path)])
    rows = table_rows(markdown, 1)
    assert rows[0] == ["Selected epoch (λ)", "UP"]
    assert rows[1:] == [["SUP", "4"], ["QAR", "4 (λ 0), 4 (λ 0.01)"]]
    by_method = {r["method"]: r for r in csv.DictReader(csv_path.open())}
    assert by_method["QAR"]["best_epochs"] == "3 3"
    assert by_method["QAR"]["lambda_at_best"] == "0.0 0.01"


def test_single_runs_numbers_order_and_best(tmp_path):
    write_run(tmp_path / "PH2", "QAR_UP", "QAR", "UP", 0.85, 0.75)
    write_run(tmp_path / "PH2", "SUP_UP", "SUP", "UP", 0.80, 0.70, std=0.2)
    write_run(tmp_path / "PH2", "MT_SU", "MT", "SU", 0.82, 0.72)
    write_run(tmp_path / "PH2", "PLQW_AU", "PL-QW", "AU", 0.83, 0.73)
    write_run(tmp_path / "PH2", "CPS_UP", "CPS", "UP", 0.81, 0.71)
    markdown = collect_results.main(["--output_dir", str(tmp_path)])
    rows = table_rows(markdown)
    assert rows[0] == [
        "Method",
        "UP Dice",
        "UP Jaccard",
        "AU Dice",
        "AU Jaccard",
        "SU Dice",
        "SU Jaccard",
    ]
    assert [r[0] for r in rows[1:]] == ["SUP", "MT", "CPS", "QAR", "PL-QW"]  # paper order
    sup, mt, cps, qar, plqw = rows[1:]
    assert sup[1:3] == ["80.00 ± 20.00", "70.00 ± 10.00"]  # per-image std of one run
    assert qar[1] == "**85.00 ± 10.00**" and qar[3] == "–"  # best of its column; no AU run
    assert plqw[3] == "**83.00 ± 10.00**" and mt[5] == "**82.00 ± 10.00**"
    assert cps[1:3] == ["81.00 ± 10.00", "71.00 ± 5.00"]
    assert "†" not in markdown and "population std over the test images" in markdown
    fraction = collect_results.main(["--output_dir", str(tmp_path), "--scale", "fraction"])
    assert "0.800 ± 0.200" in fraction


def test_seeds_are_averaged_with_a_footnote_and_csv(tmp_path):
    for seed, dice in enumerate([0.70, 0.80, 0.90]):
        write_run(tmp_path, f"SUP_s{seed}", "SUP", "UP", dice, dice - 0.1, seed=seed)
    write_run(tmp_path, "QAR_s0", "QAR", "UP", 0.5, 0.4)
    md_path, csv_path = tmp_path / "out" / "t.md", tmp_path / "out" / "t.csv"
    markdown = collect_results.main(
        ["--output_dir", str(tmp_path), "--markdown", str(md_path), "--csv", str(csv_path)]
    )
    rows = table_rows(markdown)
    # mean of the run means 0.8; sample std over the 3 runs 0.1 (not the per-image 0.1 std)
    assert rows[1][1] == "**80.00 ± 10.00**†"
    assert rows[2][1] == "50.00 ± 10.00"
    assert "† Several runs (seeds; 3 per cell): mean ± sample std" in markdown
    assert md_path.read_text() == markdown
    records = list(csv.DictReader(csv_path.open()))
    sup = next(r for r in records if r["method"] == "SUP")
    assert sup["num_runs"] == "3" and sup["std_over"] == "runs" and sup["seeds"] == "0 1 2"
    assert float(sup["dice_mean"]) == pytest.approx(0.8)
    assert float(sup["dice_std"]) == pytest.approx(0.1)
    assert float(sup["jaccard_mean"]) == pytest.approx(0.7)
    qar = next(r for r in records if r["method"] == "QAR")
    assert qar["std_over"] == "images" and float(qar["dice_std"]) == pytest.approx(0.1)


def test_one_table_per_dataset_and_extra_metrics(tmp_path):
    write_run(tmp_path, "a", "SUP", "UP", 0.8, 0.7, dataset="PH2")
    write_run(tmp_path, "b", "SUP", "UP", 0.6, 0.5, dataset="CVC-ClinicDB")
    markdown = collect_results.main(["--output_dir", str(tmp_path), "--metrics", "dice", "f1"])
    assert markdown.index("### CVC-ClinicDB") < markdown.index("### PH2")
    assert "UP F1" in markdown and "UP Jaccard" not in markdown


def test_repeated_seed_keeps_the_newer_run(tmp_path, capsys):
    old = write_run(tmp_path, "old", "SUP", "UP", 0.5, 0.4, seed=1)
    new = write_run(tmp_path, "new", "SUP", "UP", 0.7, 0.6, seed=1)
    os.utime(old, (1_000_000, 1_000_000))
    markdown = collect_results.main(["--output_dir", str(tmp_path)])
    assert "70.00 ± 10.00" in markdown and "†" not in markdown
    assert f"using the newer {new}" in capsys.readouterr().err


def test_fallback_acronyms_from_names(tmp_path):
    path = tmp_path / "r" / "results.json"
    path.parent.mkdir()
    test = {"dice": {"mean": 0.9, "std": 0.0, "n": 1}, "jaccard": {"mean": 0.8, "std": 0, "n": 1}}
    path.write_text(json.dumps({"method": "ours_pl_qw", "seg_model": "swinunet", "test": test}))
    rows = table_rows(collect_results.main(["--output_dir", str(tmp_path)]))
    assert rows[0][1] == "SU Dice" and rows[1][0] == "PL-QW"


def test_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(SystemExit, match=r"no results\.json under"):
        collect_results.main(["--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="is not a folder"):
        collect_results.main(["--output_dir", str(tmp_path / "absent")])
    bad = tmp_path / "x" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match=r"x/results\.json is not valid JSON"):
        collect_results.main(["--output_dir", str(tmp_path)])
    bad.write_text(json.dumps({"method_acronym": "QAR", "model_acronym": "UP"}))
    with pytest.raises(SystemExit, match="no 'test' metrics"):
        collect_results.main(["--output_dir", str(tmp_path)])


def test_a_multitask_run_gives_each_task_table_a_row(tmp_path):
    """VerSemi's results.json holds every task's test: each task's table shows it beside
    the runs trained on that task alone."""
    write_run(tmp_path / "skin", "SUP_skin", "SUP", "UP", 0.80, 0.70, dataset="skin")
    path = write_run(tmp_path / "multi", "VS", "VerSemi", "UP", 0.0, 0.0, dataset="both")
    data = json.loads(path.read_text())
    data["tasks"] = {
        "skin": {"test": {"dice": {"mean": 0.84, "std": 0.1, "n": 30}}},
        "glands": {"test": {"dice": {"mean": 0.61, "std": 0.2, "n": 30}}},
    }
    path.write_text(json.dumps(data))
    runs = collect_results.load_runs(path)
    assert [(r.dataset, r.test["dice"]["mean"]) for r in runs] == [("skin", 0.84), ("glands", 0.61)]
    markdown = collect_results.main(["--output_dir", str(tmp_path)])
    assert "both" not in markdown  # the task mean is not a data set of its own
    assert "84.0" in markdown and "61.0" in markdown and "80.0" in markdown
    data["tasks"]["glands"] = {"val": {}}
    path.write_text(json.dumps(data))
    with pytest.raises(collect_results.ResultsError, match="task 'glands' has no test"):
        collect_results.load_runs(path)
