"""The three bash entry points, as a user runs them: settings from the environment, clear
refusals before any training, and the whole chain on a tiny data set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_script(script: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    full = {
        **os.environ,
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        **env,
    }
    return subprocess.run(
        ["bash", str(REPO / script)],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("script", "env", "message"),
    [
        ("train_mq.sh", {"DATASET": "PH2"}, "TRAIN_CSV still points to the built-in demo"),
        (
            "train_mq.sh",
            {"TRAIN_CSV": "/data/PH2/train.csv"},
            "is your data, but DATASET is still 'demo'",
        ),
        (
            "train_SSL_methods.sh",
            {"DATASET": "PH2", "TRAIN_CSV": "a.csv", "VAL_CSV": "b.csv", "TEST_CSV": "c.csv"},
            "UNLABELED_CSV_5K still points to the built-in demo",
        ),
        ("train_SSL_methods.sh", {"METHODS": "supervised nope"}, "unknown method 'nope'"),
        (
            "train_SSL_methods.sh",
            {"METHODS": "supervised", "SEG_MODELS": "unet3d"},
            "unknown model 'unet3d'",
        ),
        (
            "train_SSL_methods.sh",
            {"METHODS": "ours_qar", "MQ_CHECKPOINT": "/no/gphi.pth"},
            "ours_qar needs g_phi but MQ_CHECKPOINT=/no/gphi.pth does not exist",
        ),
        (
            "train_SSL_methods.sh",
            {"METHODS": "supervised", "PARALLEL_RUNS": "0"},
            "PARALLEL_RUNS must be a whole number >= 1, got '0'",
        ),
        ("test_mq.sh", {"CHECKPOINT": "/no/best.pth"}, "g_phi checkpoint not found: /no/best.pth"),
    ],
)
def test_scripts_refuse_bad_settings_before_training(script, env, message, tmp_path):
    proc = run_script(script, {"LOG_DIR": str(tmp_path / "logs"), **env}, timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_the_three_scripts_chain_on_a_tiny_data_set(tiny_demo, tmp_path):
    """train_mq.sh -> test_mq.sh -> train_SSL_methods.sh with the release's variable names,
    on a tiny set: weak models, g_phi, its test metrics, two methods and the table."""
    out = tmp_path / "checkpoints"
    common = {
        "DATASET": "tiny",
        "TRAIN_CSV": str(tiny_demo["train"]),
        "VAL_CSV": str(tiny_demo["val"]),
        "TEST_CSV": str(tiny_demo["test"]),
        "IMAGE_SIZE": "64",
        "EPOCHS": "1",
        "NUM_WORKERS": "0",
        "LOG_DIR": str(tmp_path / "logs"),
    }
    mq = run_script(
        "train_mq.sh",
        {
            **common,
            "BACKBONE": "test_resnet",
            "PRETRAINED": "false",
            "SAMPLES_PER_IMAGE": "2",
            "SAMPLES_PER_IMAGE_VAL": "2",
            "BATCH_SIZE": "8",
            "WEAK_EPOCHS": "1",
            "WEAK_SAVE_EPOCHS": "1",
            "WEAK_BATCH_SIZE": "4",
            "WEAK_MODEL_DIR": str(out / "weak"),
            "OUTPUT_DIR": str(out / "mq"),
        },
    )
    assert mq.returncode == 0, mq.stdout[-2000:] + mq.stderr[-2000:]
    checkpoint = out / "mq" / "mq_tiny" / "best.pth"
    assert checkpoint.is_file() and (out / "weak" / "weak_models.json").is_file()
    assert (tmp_path / "logs" / "mq_train" / "mq_tiny.log").is_file()

    # test_mq.sh finds the run by DATASET and the test split in the checkpoint.
    test = run_script(
        "test_mq.sh",
        {"DATASET": "tiny", "CHECKPOINT": str(checkpoint), "NUM_WORKERS": "0", **common},
    )
    assert test.returncode == 0, test.stdout[-2000:] + test.stderr[-2000:]
    metrics = json.loads((checkpoint.parent / "test_metrics.json").read_text())
    assert metrics["n"] == 4 * 5 and metrics["test_csv"] == str(tiny_demo["test"])

    ssl = run_script(
        "train_SSL_methods.sh",
        {
            **common,
            "UNLABELED_CSV_5K": str(tiny_demo["unlabeled"]),
            "METHODS": "supervised ours_qar",
            "SEG_MODELS": "unetpp",
            "SEG_ENCODER": "resnet18",
            "ENCODER_WEIGHTS": "none",
            "DECODER_CHANNELS": "16 8 8 8 8",
            "BATCH_SIZE_LABELED": "4",
            "BATCH_SIZE_UNLABELED": "4",
            "LAMBDA_WARMUP_QAR": "0",
            "LAMBDA_RAMPUP_QAR": "1",
            "MQ_CHECKPOINT": str(checkpoint),
            "OUTPUT_DIR": str(out / "methods"),
            "PARALLEL_RUNS": "2",  # the two runs side by side, each logging to its file
        },
    )
    assert ssl.returncode == 0, ssl.stdout[-2000:] + ssl.stderr[-2000:]
    assert ssl.stdout.count("=== finished ") == 2, ssl.stdout
    assert len(list((tmp_path / "logs" / "methods").glob("*_tiny_UP_*.log"))) == 2
    runs = sorted(p.parent.name for p in (out / "methods").glob("*/results.json"))
    assert [r.split("_")[0] for r in runs] == ["QAR", "SUP"]
    assert all("_tiny_UP_1_30_4_4_" in r for r in runs)
    table = (out / "methods" / "results_table.md").read_text()
    assert "| SUP |" in table and "| QAR |" in table
    record = json.loads(next((out / "methods").glob("QAR_*/args.json")).read_text())
    assert record["args"]["lambda_final"] == 0.01 and record["args"]["encoder"] == "resnet18"
    assert Path(record["args"]["mq_checkpoint"]) == checkpoint


def test_side_by_side_runs_report_a_failed_run_and_fail(tmp_path):
    """PARALLEL_RUNS > 1: a run that fails in the background fails the script, named."""
    missing = str(tmp_path / "missing.csv")
    proc = run_script(
        "train_SSL_methods.sh",
        {
            **dict.fromkeys(("TRAIN_CSV", "VAL_CSV", "TEST_CSV", "UNLABELED_CSV_5K"), missing),
            "DATASET": "broken",
            "METHODS": "supervised",
            "SEG_MODELS": "unetpp",
            "PARALLEL_RUNS": "2",
            "LOG_DIR": str(tmp_path / "logs"),
            "OUTPUT_DIR": str(tmp_path / "methods"),
        },
        timeout=120,
    )
    assert proc.returncode != 0
    assert "these runs failed" in proc.stderr and "SUP_broken_UP_" in proc.stderr, proc.stderr
    log = next((tmp_path / "logs" / "methods").glob("SUP_broken_UP_*.log")).read_text()
    assert "missing.csv" in log


@pytest.mark.slow
def test_train_versemi_runs_a_task_table_with_a_g_phi_per_task(tiny_demo, tmp_path):
    """train_versemi.sh on a two-task table: one g_phi per task (named in a table copy),
    SUP on each task alone, VerSemi-QW over both, one results table per task."""
    d = tiny_demo
    table = tmp_path / "tasks.csv"
    table.write_text(
        "name,labeled_csv,unlabeled_csv,val_csv,test_csv\n"
        f"one,{d['train']},{d['unlabeled']},{d['val']},{d['test']}\n"
        f"two,{d['train']},{d['unlabeled']},{d['val']},{d['test']}\n"
    )
    out = tmp_path / "versemi"
    proc = run_script(
        "train_versemi.sh",
        {
            "TASK_TABLE": str(table),
            "NAME": "tiny2",
            "MQ_MODE": "per_task",
            "METHODS_PER_TASK": "supervised",
            "METHODS_MULTITASK": "versemi_quality",
            "IMAGE_SIZE": "64",
            "EPOCHS": "2",
            "STAGE2_EPOCH": "1",
            "SEG_ENCODER": "resnet18",
            "ENCODER_WEIGHTS": "none",
            "DECODER_CHANNELS": "16 8 8 8 8",
            "BATCH_SIZE_LABELED": "4",
            "BATCH_SIZE_UNLABELED": "4",
            "NUM_WORKERS": "0",
            "MIXED_PRECISION": "no",
            "MQ_EPOCHS": "1",
            "MQ_BACKBONE": "test_resnet",
            "MQ_PRETRAINED": "false",
            "MQ_USE_WEAK_MODELS": "false",
            "MQ_SAMPLES_PER_IMAGE": "2",
            "SAMPLES_PER_IMAGE_VAL": "2",
            "MQ_OUTPUT_DIR": str(tmp_path / "mq"),
            "OUTPUT_DIR": str(out),
            "LOG_DIR": str(tmp_path / "logs"),
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.parent.name for p in (tmp_path / "mq").glob("*/best.pth")) == [
        "mq_tiny2_one",
        "mq_tiny2_two",
    ]
    copy = (out / "tasks_per_task_gphi.csv").read_text().splitlines()
    assert copy[0].endswith(",mq_checkpoint") and copy[2].endswith("mq_tiny2_two/best.pth")
    results = json.loads(next((out / "multitask").glob("VerSemi-QW_*/results.json")).read_text())
    assert set(results["tasks"]) == {"one", "two"}
    table_md = (out / "results_table.md").read_text()
    assert "### one" in table_md and "### two" in table_md
    # a row in each task's score table and in its selected-epoch table
    assert table_md.count("| VerSemi-QW |") == 4 and table_md.count("| SUP |") == 4


def test_swin_unet_says_it_ignores_a_cnn_encoder_weights_file(tmp_path):
    weights = tmp_path / "lite0.pth"
    weights.write_bytes(b"")
    proc = run_script(
        "train_SSL_methods.sh",
        {
            "METHODS": "supervised",
            "SEG_MODELS": "swinunet",
            "ENCODER_WEIGHTS": str(weights),
            "SWIN_PRETRAINED_PATH": str(tmp_path / "no_swin.pth"),
            "LOG_DIR": str(tmp_path / "logs"),
            "OUTPUT_DIR": str(tmp_path / "out"),
        },
        timeout=120,
    )
    assert f"not ENCODER_WEIGHTS={weights}" in proc.stderr, proc.stderr
    # and the missing Swin file is refused before training (the run's output goes to stdout)
    assert proc.returncode != 0
    assert "no_swin.pth' (--swin_pretrained_path) does not exist" in proc.stdout, proc.stdout


@pytest.mark.parametrize("variable", ["METHODS_PER_TASK", "METHODS_MULTITASK"])
def test_train_versemi_refuses_an_unknown_method_before_training(variable, tmp_path):
    proc = run_script(
        "train_versemi.sh",
        {
            variable: "supervised nope" if variable == "METHODS_PER_TASK" else "versemi nope",
            "MQ_OUTPUT_DIR": str(tmp_path / "mq"),
            "OUTPUT_DIR": str(tmp_path / "versemi"),
            "LOG_DIR": str(tmp_path / "logs"),
        },
        timeout=120,
    )
    assert proc.returncode != 0
    assert f"{variable}: unknown method 'nope'" in proc.stderr, proc.stderr
    # refused before g_phi or any run trained: nothing written
    assert not (tmp_path / "mq").exists() and not (tmp_path / "versemi").exists()
