"""End to end: train_semisup.py on a tiny data set, bad input, NaN losses, DDP."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from tests.conftest import torchrun, write_tiny_gphi
from training import train_semisup
from training.engine import EarlyStopping

DEMO_KEYS = ("train", "val", "test", "unlabeled")


@pytest.fixture(scope="module")
def gphi_ckpt(tmp_path_factory):
    """A tiny g_phi checkpoint at 64 px (random weights; the loop only needs its format)."""
    return write_tiny_gphi(tmp_path_factory.mktemp("gphi"), 64)


def ssl_args(tiny_demo, out, method, *extra, name=None):
    args = [
        "--method", method, "--labeled_train_csv", str(tiny_demo["train"]),
        "--labeled_val_csv", str(tiny_demo["val"]), "--labeled_test_csv", str(tiny_demo["test"]),
        "--unlabeled_csv", str(tiny_demo["unlabeled"]), "--image_size", "64", "--epochs", "2",
        "--batch_size_labeled", "4", "--batch_size_unlabeled", "4", "--encoder", "resnet18",
        "--encoder_weights", "none", "--decoder_channels", "16", "8", "8", "8", "8",
        "--num_workers", "0", "--output_dir", str(out), "--dataset", "tiny",
        "--lambda_warmup", "0", "--lambda_rampup", "1", *extra,
    ]  # fmt: skip
    if name:
        args += ["--experiment_name", name]
    return args


def test_patience_counts_only_after_the_lambda_ramp():
    """With patience 30 and QAR's warm-up 30 + ramp 40, an early peak cannot end the run
    while lambda is still rising; `--patience_from start` restores the literal rule."""
    args, _ = train_semisup.parse_args(ssl_args(dict.fromkeys(DEMO_KEYS, "x"), "o", "ours_qar"))
    args.lambda_warmup, args.lambda_rampup, args.patience = 30, 40, 30
    assert train_semisup.patience_start(args) == 70
    stopper = EarlyStopping(30, mode="max", count_from=train_semisup.patience_start(args))
    stopper.update(0.9, 0)  # the peak
    epochs = 1
    while not stopper.stop:
        stopper.update(0.5, epochs)
        epochs += 1
    assert epochs == 100 and stopper.best_epoch == 0  # 70 ramp epochs + patience 30
    args.patience_from = "start"
    literal = EarlyStopping(30, mode="max", count_from=train_semisup.patience_start(args))
    for epoch, score in enumerate([0.9] + [0.5] * 30):
        literal.update(score, epoch)
    assert literal.stop  # stopped at epoch 31, lambda still 0
    args.lambda_warmup = args.lambda_rampup = None  # SUP: no schedule, count from the start
    assert train_semisup.patience_start(args) == 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["supervised", "ours_pl_qw", "unimatch_quality"])
def test_two_methods_end_to_end(tiny_demo, tmp_path, gphi_ckpt, method):
    args = ssl_args(tiny_demo, tmp_path, method, "--mq_checkpoint", str(gphi_ckpt))
    args[args.index("--batch_size_unlabeled") + 1] = "2"  # 4 unlabeled batches > 3 labeled
    run_dir = train_semisup.main(args)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["method"] == method and results["model_acronym"] == "UP"
    for metric in ("dice", "jaccard", "soft_dice", "pixel_accuracy", "f1"):
        assert 0.0 <= results["test"][metric]["mean"] <= 1.0
        assert results["test"][metric]["n"] == 4
    assert results["test"]["f1"]["mean"] == pytest.approx(results["test"]["dice"]["mean"])
    rows = list(csv.DictReader((run_dir / "summary.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "loss_sup", "lambda", "val_dice", "lr"} <= set(rows[0])
    if method != "supervised":  # UniMatch-QW: the loader's strong views reached the step
        assert {"loss_unsup", "mean_quality", "kept_fraction"} <= set(rows[0])
        assert float(rows[1]["lambda"]) > 0
    # The selected epoch's lambda is reported, read from that epoch's row.
    best = rows[results["best_epoch"]]
    assert results["lambda_at_best"] == pytest.approx(float(best["lambda"]))
    for f in ("best.pth", "args.json"):
        assert (run_dir / f).is_file()
    torch.load(run_dir / "best.pth", weights_only=True)  # tensors and plain values only
    assert not (run_dir / "latest.pth").exists()  # only resuming needs it; removed at the end
    # One epoch = max(labeled, unlabeled) batches, for SUP too (equal update budgets).
    assert json.loads((run_dir / "args.json").read_text())["steps_per_epoch"] == 4


def test_resume_skips_a_finished_run_and_refuses_one_without_latest(tiny_demo, tmp_path):
    run_dir = train_semisup.main(ssl_args(tiny_demo, tmp_path, "supervised", name="done"))
    before = (run_dir / "results.json").read_bytes()
    assert (
        train_semisup.main(ssl_args(tiny_demo, tmp_path, "supervised", "--resume", name="done"))
        == run_dir
    )
    assert (run_dir / "results.json").read_bytes() == before  # left as it was
    (run_dir / "results.json").unlink()  # a run folder with no latest.pth to continue from
    with pytest.raises(SystemExit, match=r"no latest\.pth"):
        train_semisup.main(ssl_args(tiny_demo, tmp_path, "supervised", "--resume", name="done"))
    assert (run_dir / "best.pth").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "nope"], "unknown method 'nope'"),
        (["--seg_model", "unet3d"], "unknown segmentation model 'unet3d'"),
        (["--mq_checkpoint", "/no/such/gphi.pth"], "g_phi checkpoint not found"),
    ],
)
def test_bad_input_fails_before_training(tiny_demo, tmp_path, extra, message):
    args = ssl_args(tiny_demo, tmp_path, "ours_qar", name="bad")
    args[args.index("--method") : args.index("--method") + 2] = []
    if "--method" not in extra:
        args = ["--method", "ours_qar", *args]
    with pytest.raises(SystemExit, match=message):
        train_semisup.main([*args, *extra])
    assert not (tmp_path / "bad" / "latest.pth").exists()


def test_foreign_checkpoint_and_image_size_are_refused(tiny_demo, tmp_path, gphi_ckpt):
    bare = tmp_path / "bare.pth"
    torch.save({"weights": torch.zeros(2)}, bare)
    with pytest.raises(SystemExit, match="not a g_phi checkpoint"):
        train_semisup.main(ssl_args(tiny_demo, tmp_path, "ours_qar", "--mq_checkpoint", str(bare)))
    args = ssl_args(tiny_demo, tmp_path, "ours_qar", "--mq_checkpoint", str(gphi_ckpt))
    args[args.index("--image_size") + 1] = "32"
    with pytest.raises(SystemExit, match=r"trained at 64 px .* --mq_resize"):
        train_semisup.main(args)
    # A g_phi trained on differently normalised images would score garbage in Phase 2.
    ckpt = torch.load(gphi_ckpt, weights_only=True)
    ckpt["normalization"] = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    other = tmp_path / "other_norm.pth"
    torch.save(ckpt, other)
    with pytest.raises(SystemExit, match=r"normalised with mean \[0.5, 0.5, 0.5\]"):
        train_semisup.main(ssl_args(tiny_demo, tmp_path, "ours_qar", "--mq_checkpoint", str(other)))


@pytest.mark.slow
def test_sup_control_with_the_mixed_batchnorm_forward(tiny_demo, tmp_path):
    """SUP with --bn_forward mixed loads D_U and forwards it (BN sees D_U as in SSL runs)."""
    run = train_semisup.main(
        ssl_args(tiny_demo, tmp_path, "supervised", "--bn_forward", "mixed", name="sup_mixed")
    )
    plain = train_semisup.main(ssl_args(tiny_demo, tmp_path, "supervised", name="sup_plain"))
    a, b = (json.loads((r / "results.json").read_text()) for r in (run, plain))
    assert a["test"]["dice"] != b["test"]["dice"]  # the BN statistics differ, so the model
    record = json.loads((run / "args.json").read_text())
    assert record["unlabeled_images"] == 8 and record["args"]["bn_forward"] == "mixed"


def test_empty_csv_and_missing_swin_weights_are_refused(tiny_demo, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("image_path,mask_path\n")
    args = ssl_args(tiny_demo, tmp_path, "supervised", name="e")
    args[args.index("--labeled_train_csv") + 1] = str(empty)
    with pytest.raises(SystemExit, match="no rows"):
        train_semisup.main(args)
    swin = ssl_args(
        tiny_demo,
        tmp_path,
        "supervised",
        "--seg_model",
        "swinunet",
        "--encoder_weights",
        "imagenet",
        "--swin_pretrained_path",
        "/no/swin.pth",
    )
    with pytest.raises(SystemExit, match=r"/no/swin\.pth"):
        train_semisup.main(swin)


@pytest.mark.slow
def test_nan_loss_stops_naming_step_and_term_and_keeps_checkpoint(tiny_demo, tmp_path, monkeypatch):
    from training.methods.base import METHODS

    cls = METHODS["supervised"]
    original = cls.train_step

    def poisoned(self, batch, info):
        loss, logs = original(self, batch, info)
        if info.epoch >= 1.0:  # the second epoch goes bad
            bad = loss * float("nan")
            return bad, {**logs, "loss_sup": bad}
        return loss, logs

    monkeypatch.setattr(cls, "train_step", poisoned)
    with pytest.raises(SystemExit, match=r"'loss_sup' is nan at epoch 1, step \d+"):
        train_semisup.main(ssl_args(tiny_demo, tmp_path, "supervised", name="nan"))
    state = torch.load(tmp_path / "nan" / "latest.pth", weights_only=True)
    assert state["epoch"] == 0  # the last good checkpoint is intact
    assert all(
        torch.isfinite(v).all()
        for v in state["components"]["method"]["networks"][0].values()
        if v.is_floating_point()
    )


@pytest.mark.slow
def test_two_cpu_processes_finish_and_test_every_image_once(tiny_demo, tmp_path, gphi_ckpt):
    """torchrun with 2 gloo processes: both ranks finish, rank 0 writes, the gathered test
    covers every image once (the sampler's padding undone), like a single-process run."""
    args = ssl_args(tiny_demo, tmp_path, "ours_qar", "--mq_checkpoint", str(gphi_ckpt), name="ddp")
    proc = torchrun("training/train_semisup.py", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test (4 images") == 1  # one process reports
    ddp = json.loads((tmp_path / "ddp" / "results.json").read_text())
    single_dir = train_semisup.main(
        ssl_args(tiny_demo, tmp_path, "ours_qar", "--mq_checkpoint", str(gphi_ckpt), name="one")
    )
    single = json.loads((single_dir / "results.json").read_text())
    assert ddp["test"].keys() == single["test"].keys()
    for metric, stats in ddp["test"].items():
        assert stats["n"] == single["test"][metric]["n"] == 4  # every test image, once
        assert 0.0 <= stats["mean"] <= 1.0
    record = json.loads((tmp_path / "ddp" / "args.json").read_text())
    assert record["world_size"] == 2


@pytest.mark.slow
def test_heldout_masks_give_diagnostics_without_changing_training(tiny_demo, tmp_path, gphi_ckpt):
    """D_U with a mask_path column: diag_* columns and a plot per run, the same training."""
    with open(tiny_demo["train"]) as f:
        rows = list(csv.DictReader(f))
    root = tiny_demo["train"].parent  # the CSVs' relative paths start here
    plain, masked = root / "u_heldout_test.csv", root / "u_masks_heldout_test.csv"
    plain.write_text("img_path\n" + "".join(f"{r['image_path']}\n" for r in rows))
    masked.write_text(
        "img_path,mask_path\n" + "".join(f"{r['image_path']},{r['mask_path']}\n" for r in rows)
    )
    runs = {}
    for name, u_csv in (("plain", plain), ("masked", masked)):
        args = ssl_args(tiny_demo, tmp_path, "ours_pl_qw", "--mq_checkpoint", str(gphi_ckpt))
        args[args.index("--unlabeled_csv") + 1] = str(u_csv)
        runs[name] = train_semisup.main([*args, "--experiment_name", name])
    a, b = (list(csv.DictReader((runs[n] / "summary.csv").open())) for n in ("plain", "masked"))
    for ra, rb in zip(a, b, strict=True):
        for key in ra:
            if key not in ("seconds", "epoch_seconds"):
                assert ra[key] == rb[key], key  # held-out masks never reach the loss
    diag = [k for k in b[0] if k.startswith("diag_")]
    assert {"diag_pl_dice", "diag_student_dice", "diag_q_pearson", "diag_kept_fraction"} <= set(
        diag
    )
    assert not any(k.startswith("diag_") for k in a[0])
    assert 0.0 <= float(b[-1]["diag_pl_dice"]) <= 1.0
    assert -1.0 <= float(b[-1]["diag_q_spearman"]) <= 1.0 or b[-1]["diag_q_spearman"] == "nan"
    assert (runs["masked"] / "diagnostics.png").stat().st_size > 1000
    ja, jb = (json.loads((runs[n] / "results.json").read_text()) for n in ("plain", "masked"))
    assert ja["test"] == jb["test"]
