"""Segmentation networks f_theta (docs/METHOD.md §4): the SEG_MODELS table, one
forward/backward test per entry (smp's BaseModelTester style), the factory's argument
checks, the shape checks, and the module layout (no import cycle, `--list` by path)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.seg_models import (
    SEG_MODEL_ACRONYMS,
    SEG_MODEL_ARGUMENTS,
    SEG_MODELS,
    check_seg_model_args,
    create_seg_model,
    seg_model_acronym,
)
from models.swin_unet import SwinUNet, stage_window_sizes, valid_image_sizes
from models.swin_unet_utils import swin_checkpoint_problem

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
SPECS = list(SEG_MODELS.values())
# Tiny settings, each given to the models that take it: small CNN decoders keep the tests
# fast; Swin-UNet's size is fixed by its Swin-T encoder.
TINY = {
    "encoder": "resnet18",
    "encoder_weights": None,
    "image_size": SIZE,
    "decoder_channels": (32, 16, 16, 8, 8),
}
# A value other than the default for every argument that not every model takes.
NON_DEFAULT = {
    "encoder": "resnet18",
    "decoder_channels": (32, 16, 16, 8, 8),
    "swin_pretrained_path": "swin_tiny_patch4_window7_224_22k.pth",
    "decoder_depths": (2, 2, 2, 0),
    "drop_path_rate": 0.0,
    "skip_source": "official",
}


def build(spec, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    tiny = {k: v for k, v in TINY.items() if k in spec.arguments}
    return create_seg_model(spec.name, **{**tiny, **kwargs})


def test_table_is_the_papers():
    assert [(s.name, s.acronym) for s in SPECS] == [
        ("unetpp", "UP"),
        ("attentionunet", "AU"),
        ("swinunet", "SU"),
    ]
    assert [s.column for s in SPECS] == list(range(len(SPECS)))  # dict order = paper's columns
    assert {name: spec.acronym for name, spec in SEG_MODELS.items()} == SEG_MODEL_ACRONYMS
    for spec in SPECS:
        assert {"encoder_weights", "image_size"} <= set(spec.arguments)
        assert seg_model_acronym(spec.name) == seg_model_acronym(spec.acronym.lower())
        assert seg_model_acronym(spec.name.upper()) == spec.acronym
    assert "encoder" not in SEG_MODELS["swinunet"].arguments  # always Swin-T
    assert "swin_pretrained_path" not in SEG_MODELS["unetpp"].arguments
    assert set(NON_DEFAULT) == {
        arg for arg in SEG_MODEL_ARGUMENTS if not all(arg in s.arguments for s in SPECS)
    }


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_forward_backward(spec):
    model = build(spec).train()
    x = torch.randn(2, 3, SIZE, SIZE)
    logits, features = model.forward_features(x)
    assert logits.shape == (2, 1, SIZE, SIZE)
    assert features.ndim == 4 and features.shape[:2] == (2, model.decoder_feature_channels)
    assert torch.isfinite(logits).all() and torch.isfinite(features).all()

    (logits.mean() + features.mean()).backward()
    encoder_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert any(g.abs().sum() > 0 for g in encoder_grads), "no gradient reached the encoder"
    assert all(torch.isfinite(g).all() for g in encoder_grads)
    # no unused parameters (DistributedDataParallel would need find_unused_parameters)
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_eval_forward_matches_forward_features(spec):
    model = build(spec).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_features(x)[0])


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_wrong_input_shape_is_explained(spec):
    model = build(spec)
    with pytest.raises(ValueError, match=r"divisible by 32|built for 64x64"):
        model(torch.randn(1, 3, SIZE + 16, SIZE))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 1, SIZE, SIZE))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_argument_the_model_does_not_take_is_an_error(spec):
    for arg, value in NON_DEFAULT.items():
        if arg in spec.arguments:
            continue
        with pytest.raises(
            ValueError, match=rf"{spec.name} \({spec.acronym}\) does not take {arg}"
        ):
            create_seg_model(spec.name, encoder_weights=None, **{arg: value})
        # unset or at its default (one call with shared settings serves every model): dropped
        for unset in (SEG_MODEL_ARGUMENTS[arg], None):
            assert check_seg_model_args(spec.name, encoder_weights=None, **{arg: unset}) is spec
    with pytest.raises(ValueError, match="no segmentation model takes the argument 'decoder_chan'"):
        create_seg_model(spec.name, decoder_chan=(8, 8, 8, 8, 8))


def test_check_names_every_problem_without_drawing_random_numbers(tmp_path):
    missing = str(tmp_path / "swin_tiny_patch4_window7_224_22k.pth")
    rng = torch.random.get_rng_state()
    with pytest.raises(ValueError) as err:
        check_seg_model_args("SU", encoder="resnet18", image_size=100, swin_pretrained_path=missing)
    message = str(err.value)
    assert "swinunet (SU) does not take encoder" in message
    assert swin_checkpoint_problem(missing) in message  # the one check of the Swin path
    assert "multiple of 32" in message
    assert (
        check_seg_model_args("AU", encoder="resnet18", encoder_weights="none")
        is SEG_MODELS["attentionunet"]
    )
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_acronyms_and_case_resolve():
    small = {"encoder": "resnet18", "image_size": SIZE, "decoder_channels": (32, 16, 16, 8, 8)}
    model = create_seg_model("AU", encoder_weights="none", **small)
    assert type(model).__name__ == "AttentionUNet"
    model = create_seg_model("UnetPP", encoder_weights="None", **small)
    assert type(model).__name__ == "UnetPlusPlus"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        create_seg_model("unet3plus", encoder_weights=None)
    for spec in SPECS:
        assert f"{spec.name} ({spec.acronym})" in str(err.value)


def test_unknown_encoder_is_explained():
    with pytest.raises(ValueError, match="unknown smp encoder 'resnet35'"):
        create_seg_model("unetpp", encoder="resnet35", encoder_weights=None)


def test_cnn_rejects_bad_image_size_at_build_time():
    with pytest.raises(ValueError, match="divisible by 32"):
        create_seg_model("attentionunet", encoder="resnet18", encoder_weights=None, image_size=100)


def test_swinunet_missing_checkpoint_errors_before_training(tmp_path):
    missing = tmp_path / "swin_tiny_patch4_window7_224_22k.pth"
    with pytest.raises(ValueError, match="--swin_pretrained_path") as err:
        create_seg_model(
            "swinunet",
            encoder_weights="imagenet",
            image_size=SIZE,
            swin_pretrained_path=str(missing),
        )
    assert str(missing) in str(err.value)
    with pytest.raises(ValueError, match="needs --swin_pretrained_path"):
        create_seg_model("swinunet", encoder_weights="imagenet", image_size=SIZE)


def test_swinunet_random_init_ignores_path(tmp_path, capsys):
    model = create_seg_model(
        "SU",
        encoder_weights="none",
        image_size=SIZE,
        swin_pretrained_path=str(tmp_path / "absent.pth"),
    )
    assert isinstance(model, SwinUNet)
    assert "random init" in capsys.readouterr().out


def test_list_by_path_prints_the_table(tmp_path):
    # from a folder outside the repository, without torch: a shell script reads it
    script = ROOT / "models" / "seg_models.py"
    out = subprocess.run(
        [sys.executable, str(script), "--list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    expected = [f"{s.name}\t{s.acronym}\t{','.join(s.arguments)}" for s in SPECS]
    assert out.stdout.splitlines() == expected
    probe = "import sys, models.seg_models; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr


def test_models_import_graph_has_no_cycle():
    """Every import between models/ modules, function-level ones included: a DAG."""
    graph = {}
    for path in (ROOT / "models").glob("*.py"):
        imports = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("models."):
                imports.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                imports |= {
                    a.name.split(".")[1] for a in node.names if a.name.startswith("models.")
                }
        graph[path.stem] = imports
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, f"import cycle: {' -> '.join((*stack, module))}"
        if module not in done:
            for dep in graph.get(module, ()):
                visit(dep, (*stack, module))
            done.add(module)

    for module in graph:
        visit(module, ())
    assert graph["common"] == set()  # the shared helpers depend on no other model module


def test_swin_windows_tile_every_stage():
    assert stage_window_sizes(224) == (7, 7, 7, 7)  # the paper's setting is unchanged
    assert stage_window_sizes(64) == (8, 8, 4, 2)
    assert stage_window_sizes(128) == (8, 8, 8, 4)
    for size in valid_image_sizes():
        for stage, window in enumerate(stage_window_sizes(size)):
            assert (size // (4 * 2**stage)) % window == 0
    assert 352 not in valid_image_sizes()
    with pytest.raises(ValueError, match="multiple of 32"):
        stage_window_sizes(100)
    with pytest.raises(ValueError, match="Valid sizes"):
        stage_window_sizes(352)


def test_swin_model_uses_the_chosen_windows():
    model = SwinUNet(image_size=SIZE)
    for stage, window in zip(model.encoder.layers, (8, 8, 4, 2)):
        assert all(block.window_size == (window, window) for block in stage.blocks)
    level = model.decoder[0]
    assert [b.shift_size for b in level.blocks] == [(0, 0), (4, 4)]  # W-MSA then SW-MSA


def test_swin_skip_source_and_decoder_depths():
    torch.manual_seed(0)
    model = SwinUNet(
        image_size=32, skip_source="official", decoder_depths=(1, 1, 1, 1), drop_path_rate=0.0
    )
    assert len(model.decoder[3].blocks) == 1
    logits = model(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 1, 32, 32) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="skip_source"):
        SwinUNet(image_size=32, skip_source="encoder")
