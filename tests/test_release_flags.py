"""The flags the authors' release passes to its Python scripts are accepted with their
meaning, so that a release user's train_mq.sh, test_mq.sh and train_SSL_methods.sh drive
this project's scripts."""

from __future__ import annotations

import json

import pytest

from training import test_mq, train_mq, train_semisup, train_weak_models


def test_weak_model_training_takes_the_release_names():
    a = train_weak_models.build_parser().parse_args(
        ["--train_csv", "t.csv", "--output_dir", "w", "--max_epochs", "7", "--encoder_name", "x"]
    )
    assert a.epochs == 7 and a.encoder == "x"


def test_train_mq_takes_a_bare_pretrained_and_ignores_tracking_flags(capsys):
    base = ["--train_csv", "t.csv", "--val_csv", "v.csv", "--experiment_name", "e"]
    a = train_mq.build_parser().parse_args([*base, "--pretrained", "--dropout", "0.2"])
    assert a.pretrained is True and a.dropout == 0.2
    a = train_mq.build_parser().parse_args([*base, "--pretrained", "false"])
    assert a.pretrained is False
    a = train_mq.build_parser().parse_args([*base, "--use_comet", "--comet_project", "p"])
    assert not hasattr(a, "use_comet") and not hasattr(a, "comet_project")
    err = capsys.readouterr().err
    assert "--use_comet is ignored" in err and "--comet_project is ignored" in err


def test_weak_checkpoint_paths_name_the_weak_model_folder(tmp_path):
    folder = tmp_path / "weak"
    folder.mkdir()
    names = ["weak_model_epoch_1.pth", "weak_model_epoch_3.pth"]
    (folder / "weak_models.json").write_text(json.dumps({"checkpoints": names}))
    assert train_mq.weak_folder_of([str(folder / n) for n in names]) == folder.resolve()
    with pytest.raises(SystemExit, match="pass all of them"):
        train_mq.weak_folder_of([str(folder / names[0])])
    with pytest.raises(SystemExit, match=r"weak_models\.json missing"):
        train_mq.weak_folder_of([str(tmp_path / "weak_model_epoch_1.pth")])


def test_test_mq_and_train_semisup_take_the_release_names(capsys):
    a = test_mq.build_parser().parse_args(["--checkpoint", "c.pth", "--samples_per_image", "3"])
    assert a.val_samples == 3
    args, _ = train_semisup.parse_args(
        [
            "--method", "ours_qar", "--labeled_train_csv", "t", "--labeled_val_csv", "v",
            "--labeled_test_csv", "s", "--seg_encoder", "resnet18", "--use_comet",
        ]
    )  # fmt: skip
    assert args.encoder == "resnet18"
    assert "--use_comet is ignored" in capsys.readouterr().err


def test_the_release_passes_network_flags_to_every_network(capsys):
    """--swin_pretrained_path and --encoder reach every network in the release's script: a
    network that does not take one ignores it with a notice; other misfits stay errors."""
    base = ["--labeled_train_csv", "t", "--labeled_val_csv", "v", "--labeled_test_csv", "s"]
    args, method = train_semisup.parse_args(
        ["--method", "supervised", *base, "--swin_pretrained_path", "swin.pth"]
    )
    train_semisup.validate(args, method)
    assert "--swin_pretrained_path is ignored: unetpp" in capsys.readouterr().err
    args, method = train_semisup.parse_args(
        ["--method", "supervised", *base, "--seg_model", "swinunet", "--encoder", "resnet18",
         "--encoder_weights", "none", "--decoder_channels", "8", "8", "8", "8", "8"]
    )  # fmt: skip
    with pytest.raises(SystemExit, match="does not take decoder_channels"):
        train_semisup.validate(args, method)
    assert "--encoder is ignored: swinunet" in capsys.readouterr().err
