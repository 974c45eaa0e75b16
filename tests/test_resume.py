"""Resume is exact: a run killed with SIGKILL and restarted with --resume writes the same
summary.csv rows and the same test metrics as the same run left alone."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "training" / "train_semisup.py"


def mt_args(tiny_demo, out, name: str) -> list[str]:
    """Mean Teacher (an EMA teacher, random teacher noise) with persistent loader workers;
    8 steps per epoch (8 unlabeled images in batches of 1, the labeled loader cycling)."""
    return [
        "--method", "mean_teacher", "--labeled_train_csv", str(tiny_demo["train"]),
        "--labeled_val_csv", str(tiny_demo["val"]), "--labeled_test_csv", str(tiny_demo["test"]),
        "--unlabeled_csv", str(tiny_demo["unlabeled"]), "--image_size", "64", "--epochs", "4",
        "--batch_size_labeled", "4", "--batch_size_unlabeled", "1", "--encoder", "resnet18",
        "--encoder_weights", "none", "--decoder_channels", "16", "8", "8", "8", "8",
        "--num_workers", "1", "--cache_threads", "1", "--output_dir", str(out),
        "--experiment_name", name, "--seed", "5", "--lambda_warmup", "0",
        "--lambda_rampup", "2", "--ema_warmup_steps", "10",
    ]  # fmt: skip


def summary_rows(run_dir) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "summary.csv").open()))
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def launch(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # By path, from another folder, as the release's users run it.
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_the_run_left_alone(tiny_demo, tmp_path):
    alone = launch(mt_args(tiny_demo, tmp_path, "alone"))
    assert alone.wait(timeout=600) == 0, alone.stderr.read()[-3000:]

    killed = launch(mt_args(tiny_demo, tmp_path, "killed"))
    summary = tmp_path / "killed" / "summary.csv"
    deadline = time.time() + 600
    # Wait until epoch 2 has ended, then kill somewhere in epoch 3.
    while time.time() < deadline and killed.poll() is None:
        if summary.exists() and len(summary.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert not (tmp_path / "killed" / "results.json").exists(), "killed after it finished"

    resumed = launch([*mt_args(tiny_demo, tmp_path, "killed"), "--resume"])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    assert summary_rows(tmp_path / "killed") == summary_rows(tmp_path / "alone")
    a = json.loads((tmp_path / "alone" / "results.json").read_text())
    b = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert a["best_epoch"] == b["best_epoch"] and a["test"] == b["test"]


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_afresh(tmp_path, capsys):
    """A cell killed during its first epoch holds only its run record: --resume starts it
    again; a folder with anything else and no latest.pth is still refused."""
    from training.engine import RunFolderExists, prepare_run_dir

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "args.json").write_text("{}")
    assert prepare_run_dir(tmp_path, "run", resume=True) == run_dir
    assert "starting it afresh" in capsys.readouterr().out
    with pytest.raises(RunFolderExists, match="already exists"):
        prepare_run_dir(tmp_path, "run", resume=False)
    (run_dir / "best.pth").write_bytes(b"model")
    with pytest.raises(RunFolderExists, match=r"no latest\.pth"):
        prepare_run_dir(tmp_path, "run", resume=True)
    assert (run_dir / "best.pth").read_bytes() == b"model"
