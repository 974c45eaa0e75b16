"""VerSemi through the shared loop (training/train_semisup.py --task_table): the stage
switch, selection on the mean over tasks of each task's validation Dice, per-task tests in
results.json, bad input refused before training."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import write_tiny_gphi
from training import train_semisup


@pytest.fixture(scope="module")
def task_table(tiny_demo, tmp_path_factory):
    """Two tasks (the tiny demo twice, the second without unlabeled images)."""
    d = tiny_demo
    path = tmp_path_factory.mktemp("tasks") / "tasks.csv"
    path.write_text(
        "name,labeled_csv,unlabeled_csv,val_csv,test_csv\n"
        f"skin,{d['train']},{d['unlabeled']},{d['val']},{d['test']}\n"
        f"again,{d['train']},,{d['val']},{d['test']}\n"
    )
    return path


@pytest.fixture(scope="module")
def gphi(tmp_path_factory):
    return write_tiny_gphi(tmp_path_factory.mktemp("gphi"), 64)


def args_for(table, out, method, *extra):
    return [
        "--method", method, "--task_table", str(table), "--image_size", "64", "--epochs", "2",
        "--batch_size_labeled", "4", "--batch_size_unlabeled", "4", "--encoder", "resnet18",
        "--encoder_weights", "none", "--decoder_channels", "16", "8", "8", "8", "8",
        "--num_workers", "0", "--output_dir", str(out), "--dataset", "two",
        "--lambda_warmup", "1", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_versemi_qw_runs_both_stages_and_reports_every_task(task_table, gphi, tmp_path):
    run = train_semisup.main(
        args_for(task_table, tmp_path, "versemi_quality", "--mq_checkpoint", str(gphi))
    )
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert [float(r["lambda"]) for r in rows] == [0.0, 1.0]  # stage 1, then stage 2
    assert float(rows[0]["loss_agg"]) == 0.0 and float(rows[1]["loss_agg"]) > 0
    assert rows[0]["mean_quality"] == "nan" and 0 < float(rows[1]["mean_quality"]) < 1
    for r in rows:  # selection: the mean over tasks of each task's own validation Dice
        per_task = [float(r["val_skin_dice"]), float(r["val_again_dice"])]
        assert float(r["val_dice"]) == pytest.approx(sum(per_task) / 2)
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == {"skin", "again"}
    means = [results["tasks"][t]["test"]["dice"]["mean"] for t in ("skin", "again")]
    assert results["test"]["dice"]["mean"] == pytest.approx(sum(means) / 2)
    assert results["tasks"]["skin"]["num_test_images"] == 4
    # VerSemi's Adam betas are the multi-task methods' default, recorded with the run
    assert json.loads((run / "args.json").read_text())["args"]["betas"] == [0.5, 0.999]


@pytest.mark.slow
def test_the_pooled_model_has_no_prompts_and_gives_one_answer_per_image(task_table, tmp_path):
    run = train_semisup.main(args_for(task_table, tmp_path, "pooled_supervised"))
    results = json.loads((run / "results.json").read_text())
    # same test images under both task names, no prompt: the same Dice
    skin, again = (results["tasks"][t]["test"]["dice"]["mean"] for t in ("skin", "again"))
    assert skin == pytest.approx(again)
    run = train_semisup.main(
        args_for(task_table, tmp_path, "pooled_supervised", "--betas", "0.8", "0.99",
                 "--experiment_name", "betas")
    )  # fmt: skip
    assert json.loads((run / "args.json").read_text())["args"]["betas"] == [0.8, 0.99]


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--method", "supervised"), "--task_table is for multi-task methods"),
        (("--labeled_train_csv", "x.csv"), "reads its data from --task_table"),
    ],
)
def test_mixed_up_data_flags_are_refused(task_table, tmp_path, extra, message):
    argv = args_for(task_table, tmp_path, "versemi") + list(extra)
    with pytest.raises(SystemExit, match=message):
        train_semisup.main(argv)
    assert not any(tmp_path.iterdir())  # nothing written


def test_quality_variant_without_g_phi_is_refused(task_table, tmp_path):
    with pytest.raises(SystemExit, match="g_phi"):
        train_semisup.main(args_for(task_table, tmp_path, "versemi_qar"))
    assert not any(tmp_path.iterdir())
