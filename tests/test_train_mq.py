"""End to end: train_mq.py then test_mq.py on a tiny data set, resume, refusals, DDP."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from models.quality_predictor import load_quality_predictor
from tests.conftest import torchrun
from training import test_mq, train_mq


def train_args(tiny_demo, out, name="run", *extra):
    return [
        "--train_csv", str(tiny_demo["train"]), "--val_csv", str(tiny_demo["val"]),
        "--image_size", "64", "--samples_per_image", "2", "--samples_per_image_val", "2",
        "--epochs", "2", "--batch_size", "8", "--backbone", "test_resnet",
        "--pretrained", "false", "--num_workers", "0", "--output_dir", str(out),
        "--experiment_name", name, "--dataset", "tiny", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_train_then_test_end_to_end(tiny_demo, tmp_path):
    run_dir = train_mq.main(
        train_args(tiny_demo, tmp_path, "run", "--test_csv", str(tiny_demo["test"]))
    )
    for f in ("args.json", "summary.csv", "best.pth", "latest.pth"):
        assert (run_dir / f).is_file(), f
    for f in ("best.pth", "latest.pth", "best_model.pth"):  # the release's name links to best
        torch.load(run_dir / f, weights_only=True)  # tensors and plain values only
    rows = list(csv.DictReader((run_dir / "summary.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"train_loss", "val_loss", "val_mae", "val_pearson", "lr"} <= set(rows[0])
    args = json.loads((run_dir / "args.json").read_text())
    assert args["args"]["samples_per_image"] == 2 and "git_commit" in args

    _, ckpt = load_quality_predictor(run_dir / "best.pth")
    assert ckpt["model_config"]["backbone"] == "test_resnet"
    assert ckpt["image_size"] == 64 and ckpt["vqm_config"]["category_probs"]["identity"] == 0.2

    # The test split comes from the checkpoint, where --test_csv recorded it.
    result = test_mq.main(["--checkpoint", str(run_dir / "best.pth"), "--num_workers", "0"])
    saved = json.loads((run_dir / "test_metrics.json").read_text())
    for key in ("mae", "mse", "pearson", "spearman", "per_category", "image_dependence"):
        assert key in saved
    assert saved["n"] == 4 * 5 and saved["mae"] == pytest.approx(result["mae"])
    assert set(saved["image_dependence"]) >= {"blackout", "shuffled", "passed"}
    assert (run_dir / "test_scatter.png").stat().st_size > 1000
    assert saved["test_csv"] == str(tiny_demo["test"])


@pytest.mark.slow
def test_existing_run_is_never_overwritten_and_resume_continues(tiny_demo, tmp_path):
    run_dir = train_mq.main(train_args(tiny_demo, tmp_path, "r"))
    best_before = (run_dir / "best.pth").read_bytes()
    with pytest.raises(SystemExit, match="already exists"):
        train_mq.main(train_args(tiny_demo, tmp_path, "r"))
    assert (run_dir / "best.pth").read_bytes() == best_before
    # Resuming with more epochs continues from epoch 2 and appends to the summary.
    args = train_args(tiny_demo, tmp_path, "r", "--resume")
    args[args.index("--epochs") + 1] = "3"
    train_mq.main(args)
    rows = list(csv.DictReader((run_dir / "summary.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]


def test_bad_settings_fail_before_training(tiny_demo, tmp_path):
    with pytest.raises(SystemExit, match="sum to 1"):
        train_mq.main(train_args(tiny_demo, tmp_path, "p", "--identity_prob", "0.5"))
    assert not (tmp_path / "p" / "latest.pth").exists()
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("image,mask\na,b\n")
    args = train_args(tiny_demo, tmp_path, "c")
    args[args.index("--train_csv") + 1] = str(bad_csv)
    with pytest.raises(SystemExit, match=r"bad\.csv lacks column"):
        train_mq.main(args)
    # A wrong test split fails before training, not after it.
    args = train_args(tiny_demo, tmp_path, "t", "--test_csv", str(tmp_path / "nope.csv"))
    with pytest.raises(SystemExit, match=r"--test_csv: .*nope\.csv"):
        train_mq.main(args)
    assert not (tmp_path / "t" / "latest.pth").exists()


def test_test_mq_errors_are_clear(tiny_demo, tmp_path):
    with pytest.raises(SystemExit, match=r"no/such\.pth"):
        test_mq.main(["--checkpoint", str(tmp_path / "no/such.pth")])


@pytest.mark.slow
def test_two_process_cpu_run_through_torchrun(tiny_demo, tmp_path):
    """The same script under torchrun (DDP, gloo): both ranks finish, rank 0 writes."""
    proc = torchrun("training/train_mq.py", train_args(tiny_demo, tmp_path, "ddp"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "ddp"
    rows = list(csv.DictReader((run_dir / "summary.csv").open()))
    assert len(rows) == 2
    record = json.loads((run_dir / "args.json").read_text())
    assert record["world_size"] == 2
    model, _ = load_quality_predictor(run_dir / "best.pth")
    q = model(torch.randn(2, 4, 64, 64))
    assert torch.isfinite(q).all()
