"""Every registered SSL method (docs/METHOD.md §5-§7): a few optimisation steps on tiny tensors
move the student, give finite losses with the unsupervised term active, and leave g_phi
bit-identical; the flags the release's script variables give each method; plus
known-answer checks of the pieces each method adds.

Per-method tests iterate the registry (`METHODS`); `PAPER_METHODS` is the one
hand-written reference, checked against it.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import training.methods  # noqa: F401 - registers every method
from models.seg_models import create_seg_model
from tests.conftest import write_tiny_gphi
from training import train_semisup
from training.losses import consistency_loss
from training.methods.base import METHODS, Batch, FeatureNet, SSLMethod, StepInfo, get_method
from training.methods.contrastive import pixel_info_nce
from training.methods.cps import CrossPseudoSupervision
from training.methods.ict import InterpolationConsistency, mix
from training.methods.mean_teacher import (
    MeanTeacher,
    binary_entropy,
    certain_pixels,
    uncertainty_threshold,
)
from training.methods.pseudo_label import PseudoLabel
from training.methods.quality import QualityScorer, quality_weights, weighted_mean

SIZE = 32
ACTIVE = StepInfo(step=0, epoch=20.0, lam=0.5, ramp=0.5)  # unsupervised term switched on
# The reference: the paper's 14 methods (the release's names) in the row order of its tables.
PAPER_METHODS = [
    ("supervised", "SUP"),
    ("pseudo_label", "PL-T"),
    ("pseudo_label_sample_reweighting", "PL-C"),
    ("mean_teacher", "MT"),
    ("ua_mt", "UA-MT"),
    ("mean_teacher_quality", "MT-QW"),
    ("ict", "ICT"),
    ("ict_quality", "ICT-QW"),
    ("cps", "CPS"),
    ("cps_quality_weighted", "CPS-QW"),
    ("contrastive", "CL"),
    ("contrastive_quality", "CL-QW"),
    ("ours_qar", "QAR"),
    ("ours_pl_qw", "PL-QW"),
]
# The weak-to-strong baselines (and their quality variants) this project adds, in the
# position of their rows: after CL-QW, before the paper's own methods.
WEAK_STRONG_METHODS = [
    ("fixmatch", "FixMatch"),
    ("fixmatch_quality", "FixMatch-QW"),
    ("unimatch", "UniMatch"),
    ("unimatch_quality", "UniMatch-QW"),
    ("unimatch_qar", "UniMatch+QAR"),
]
# An untrained teacher's mean confidence (about 0.8 here) never reaches PL-C's 0.9: lower it
# so that the sample-weighted term is active in the step test.
STEP_TEST_FLAGS = {"pseudo_label_sample_reweighting": ("--confidence_threshold", "0.5")}


# --------------------------------------------------------------------------------------
# Tiny building blocks
# --------------------------------------------------------------------------------------


def tiny_net(seed: int) -> FeatureNet:
    """A U-Net++ on timm's tiny test_resnet encoder (0.8 M parameters), as the loop wraps it.

    The head is scaled so that even at init the predictions are confident in places and
    both classes occur: thresholded pseudo-label terms then have pixels to act on.
    """
    torch.manual_seed(seed)
    net = create_seg_model(
        "unetpp",
        encoder="tu-test_resnet",
        encoder_weights=None,
        image_size=SIZE,
        decoder_channels=(32, 16, 8, 8, 8),
    )
    with torch.no_grad():
        net.segmentation_head[0].weight.mul_(10.0)
    return FeatureNet(net)


def method_args(cls: type[SSLMethod], *argv: str) -> argparse.Namespace:
    """The loop-level flags the base class reads, plus the method's own, parsed for real."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--ema_decay", type=float, default=0.999)
    parser.add_argument("--ema_initial_decay", type=float, default=0.5)
    parser.add_argument("--ema_warmup_steps", type=int, default=1000)
    cls.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> QualityScorer:
    """A real (untrained, tiny) g_phi written as a Phase 1 checkpoint and loaded frozen."""
    path = write_tiny_gphi(tmp_path_factory.mktemp("g_phi"), SIZE)
    return QualityScorer(path, torch.device("cpu"), image_size=SIZE)


def make_method(
    cls: type[SSLMethod], scorer: QualityScorer, *argv: str, seeds: tuple[int, ...] = ()
) -> SSLMethod:
    # Network k gets seed 1000 k, as the loop's build_networks does.
    seeds = seeds or tuple(1000 * k for k in range(cls.num_networks))
    nets = [tiny_net(s) for s in seeds]
    return cls(method_args(cls, *argv), nets, scorer if cls.uses_quality else None)


def make_batch(
    seed: int = 0, n_l: int = 2, n_u: int = 4, unlabeled: bool = True, strong_views: int = 0
) -> Batch:
    """Labeled disks of two radii, random unlabeled images and, with `strong_views`, noisy
    copies of them as strong views with CutMix boxes in the top-left quarter."""
    g = torch.Generator().manual_seed(seed)
    x_l = torch.randn(n_l, 3, SIZE, SIZE, generator=g)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    radius = torch.tensor([6.0, 10.0])[torch.arange(n_l) % 2].view(-1, 1, 1, 1)
    y_l = (((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) < radius**2).float().expand(n_l, 1, -1, -1)
    x_u = torch.randn(n_u, 3, SIZE, SIZE, generator=g) if unlabeled else None
    x_s = tuple(x_u + 0.3 * torch.randn(x_u.shape, generator=g) for _ in range(strong_views))
    box = torch.zeros(n_u, 1, SIZE, SIZE)
    box[::2, :, : SIZE // 2, : SIZE // 2] = 1.0
    return Batch(x_l, y_l.contiguous(), x_u, x_s, (box,) * strong_views)


def flat_params(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def unsup_term(logs: dict) -> torch.Tensor:
    return logs["loss_unsup"] if "loss_unsup" in logs else logs["loss_qar"]


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def test_registry_holds_the_papers_fourteen_methods_in_row_order():
    expected = PAPER_METHODS[:12] + WEAK_STRONG_METHODS + PAPER_METHODS[12:]
    assert [(name, cls.acronym) for name, cls in METHODS.items()] == expected
    assert all(name == cls.name for name, cls in METHODS.items())
    assert [n for n, c in METHODS.items() if not c.needs_unlabeled] == ["supervised"]
    assert [n for n, c in METHODS.items() if c.num_networks != 1] == [
        "cps",
        "cps_quality_weighted",
    ]
    quality = {n for n, c in METHODS.items() if c.uses_quality}
    assert quality == {
        n for n in METHODS if n.startswith("ours") or "quality" in n or n.endswith("_qar")
    }
    assert {n: c.strong_views for n, c in METHODS.items() if c.strong_views} == {
        "fixmatch": 1,
        "fixmatch_quality": 1,
        "unimatch": 2,
        "unimatch_quality": 2,
        "unimatch_qar": 2,
    }
    assert set(STEP_TEST_FLAGS) <= set(METHODS)


@pytest.mark.parametrize("name", list(METHODS))
def test_get_method_by_name_or_acronym(name):
    cls = METHODS[name]
    assert get_method(name) is cls
    assert get_method(cls.acronym) is cls
    assert get_method(cls.acronym.lower()) is cls
    with pytest.raises(ValueError, match="unknown method 'nope'") as err:
        get_method("nope")
    assert name in str(err.value) and cls.acronym in str(err.value)


# The release's defaults, by flag (a flag means the same in every method that takes it).
RELEASE_DEFAULTS = {
    "confidence_threshold": 0.9,
    "confidence_temperature": 2.0,
    "consistency_type": "mse",
    "teacher_noise_std": 0.1,
    "teacher_noise_clip": 0.2,
    "uamt_passes": 8,
    "uamt_noise_std": 0.1,
    "uamt_noise_clip": 0.2,
    "ict_alpha": 1.0,
    "lambda_contrast": 0.1,
    "contrast_temperature": 0.1,
    "num_negatives": 256,
    "num_anchors": 256,
    "quality_threshold": 0.5,
    "quality_temperature": 2.0,
    # The release forwards D_L and D_U together; its SUP forwards D_L only.
    "bn_forward": "mixed",
    "fp_dropout": 0.5,  # UniMatch's
}
# FixMatch's and UniMatch's own confidence threshold.
WEAK_STRONG_DEFAULTS = {"confidence_threshold": 0.95}
LOOP_FLAGS = {"ema_decay", "ema_initial_decay", "ema_warmup_steps"}  # method_args adds them


@pytest.mark.parametrize("name", list(METHODS))
def test_flag_defaults_match_the_release(name):
    args = vars(method_args(METHODS[name]))
    own = {k: v for k, v in args.items() if k not in LOOP_FLAGS}
    release = {
        **RELEASE_DEFAULTS,
        **(WEAK_STRONG_DEFAULTS if METHODS[name].strong_views else {}),
        "bn_forward": "labeled_only" if name == "supervised" else "mixed",
    }
    assert own == {k: release[k] for k in own}
    assert all(type(v) is type(RELEASE_DEFAULTS[k]) for k, v in own.items())
    # Every method that reads g_phi takes tau and T of Eqn 7, and no other method does.
    assert ("quality_threshold" in own) == METHODS[name].uses_quality


def test_method_flags_fit_the_training_script():
    """Every method's flags join the loop's parser without a clash."""
    for cls in METHODS.values():
        train_semisup.build_parser(cls)


# --------------------------------------------------------------------------------------
# Script variables -> flags (SSLMethod.script_arguments)
# --------------------------------------------------------------------------------------

# Every variable train_SSL_methods.sh exports for the methods, with a valid value each
# (different numbers, so that a test sees which variable a flag came from).
RELEASE_VARIABLES = {
    "CONFIDENCE_THRESHOLD_PSEUDO": "0.81",
    "CONFIDENCE_THRESHOLD_PSEUDO_SR": "0.82",
    "CONFIDENCE_THRESHOLD_CONTRAST": "0.83",
    "CONFIDENCE_THRESHOLD_WS": "0.84",
    "FP_DROPOUT": "0.4",
    "BN_FORWARD": "separate",
    "CONFIDENCE_TEMPERATURE_PSEUDO_SR": "1.5",
    "CONSISTENCY_TYPE": "kl",
    "ICT_ALPHA": "0.7",
    "LAMBDA_CONTRAST": "0.2",
    "TEMPERATURE_CONTRAST": "0.3",
    "NUM_NEGATIVES_CONTRAST": "128",
    "QUALITY_THRESHOLD_SR": "0.6",
    "QUALITY_TEMPERATURE_SR": "3.0",
    "LAMBDA_INITIAL_QAR": "0.01",
    "LAMBDA_FINAL_QAR_VALUE": "0.02",
    "LAMBDA_WARMUP_QAR": "31",
    "LAMBDA_RAMPUP_QAR": "41",
    "LAMBDA_INITIAL_PL_QW": "0.03",
    "LAMBDA_FINAL_PL_QW_VALUE": "0.26",
    "LAMBDA_WARMUP_PL_QW": "16",
    "LAMBDA_RAMPUP_PL_QW": "32",
    "LAMBDA_INITIAL_WS": "0.9",
    "LAMBDA_FINAL_WS_VALUE": "0.95",
    "LAMBDA_WARMUP_WS": "1",
    "LAMBDA_RAMPUP_WS": "2",
}
# The loop's lambda flags and their variables; `{}` is QAR (for QAR) or PL_QW.
LAMBDA_FLAGS = {
    "--lambda_initial": "LAMBDA_INITIAL_{}",
    "--lambda_final": "LAMBDA_FINAL_{}_VALUE",
    "--lambda_warmup": "LAMBDA_WARMUP_{}",
    "--lambda_rampup": "LAMBDA_RAMPUP_{}",
}
CONSISTENCY_METHODS = ["mean_teacher", "ua_mt", "mean_teacher_quality", "ict", "ict_quality"]


def pairs(argv: list[str]) -> dict[str, str]:
    """`--flag value --flag value` -> {flag: value}, refusing a flag given twice."""
    assert len(argv) % 2 == 0 and all(f.startswith("--") for f in argv[::2]), argv
    assert len(set(argv[::2])) == len(argv) // 2, argv
    return dict(zip(argv[::2], argv[1::2]))


def test_no_variable_set_gives_no_flag():
    for cls in METHODS.values():
        assert cls.script_arguments({}) == []
        assert cls.script_arguments(dict.fromkeys(RELEASE_VARIABLES, "")) == []


@pytest.mark.parametrize("name", list(METHODS))
def test_only_the_set_variables_become_flags(name):
    cls = METHODS[name]
    full = pairs(cls.script_arguments(RELEASE_VARIABLES))
    # The flags are the method's own, or the loop's lambda schedule.
    assert set(full) <= set(cls.own_flags()) | set(LAMBDA_FLAGS)
    for var, value in RELEASE_VARIABLES.items():
        alone = pairs(cls.script_arguments({var: value}))
        assert len(alone) <= 1 and set(alone.items()) <= set(full.items()), var
        # Unset (empty) the variable: its flag, and only its flag, goes.
        rest = pairs(cls.script_arguments({**RELEASE_VARIABLES, var: ""}))
        assert rest == {f: v for f, v in full.items() if f not in alone}, var
    # Each flag comes from exactly one variable.
    sources = [pairs(cls.script_arguments({var: v})) for var, v in RELEASE_VARIABLES.items()]
    assert sorted(f for s in sources for f in s) == sorted(full)


def reads(cls: type[SSLMethod], flag: str) -> str | None:
    """The script variable `cls` takes `flag` from, or None."""
    found = [
        var
        for var, value in RELEASE_VARIABLES.items()
        if flag in pairs(cls.script_arguments({var: value}))
    ]
    assert len(found) <= 1, (cls.name, flag, found)
    return found[0] if found else None


def test_consistency_type_reaches_exactly_the_consistency_methods():
    takes = [n for n, c in METHODS.items() if "--consistency_type" in c.own_flags()]
    assert takes == CONSISTENCY_METHODS
    for name, cls in METHODS.items():
        expected = "CONSISTENCY_TYPE" if name in CONSISTENCY_METHODS else None
        assert reads(cls, "--consistency_type") == expected, name


def test_each_method_reads_its_confidence_threshold_variable():
    expected = {
        "pseudo_label": "CONFIDENCE_THRESHOLD_PSEUDO",
        "pseudo_label_sample_reweighting": "CONFIDENCE_THRESHOLD_PSEUDO_SR",
        "contrastive": "CONFIDENCE_THRESHOLD_CONTRAST",
        "contrastive_quality": "CONFIDENCE_THRESHOLD_CONTRAST",
        **{name: "CONFIDENCE_THRESHOLD_WS" for name, _ in WEAK_STRONG_METHODS},
    }
    for name, cls in METHODS.items():
        assert reads(cls, "--confidence_threshold") == expected.get(name), name


def test_lambda_variables_qar_pl_qw_or_none():
    for name, cls in METHODS.items():
        suffix = {"ours_qar": "QAR", "unimatch_qar": "QAR", "supervised": None}.get(
            name, "WS" if cls.strong_views else "PL_QW"
        )
        for flag, var in LAMBDA_FLAGS.items():
            assert reads(cls, flag) == (var.format(suffix) if suffix else None), (name, flag)


@pytest.mark.parametrize("name", list(METHODS))
def test_script_flags_are_accepted_by_the_training_script(name):
    flags = METHODS[name].script_arguments(RELEASE_VARIABLES)
    required = ["--labeled_train_csv", "a.csv", "--labeled_val_csv", "b.csv"]
    required += ["--labeled_test_csv", "c.csv"]
    args, cls = train_semisup.parse_args(["--method", name, *required, *flags])
    assert cls is METHODS[name]
    for flag, value in pairs(flags).items():
        parsed = getattr(args, flag.removeprefix("--"))
        assert parsed == type(parsed)(value), flag


def test_script_args_command_prints_the_flags():
    """`python -m training.methods --script_args NAME` with the variables in the
    environment (as train_SSL_methods.sh runs it)."""
    env = {**os.environ, **RELEASE_VARIABLES, "CONSISTENCY_TYPE": ""}
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "training.methods", "--script_args", "MT-QW"]
    out = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=True)
    expected = METHODS["mean_teacher_quality"].script_arguments(env)
    assert out.stdout.split("\n")[:-1] == expected
    assert "--consistency_type" not in expected and "--quality_threshold" in expected


# --------------------------------------------------------------------------------------
# Every method: two steps
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(METHODS))
def test_two_steps_train_the_student_and_leave_g_phi_alone(name, scorer):
    cls = METHODS[name]
    torch.manual_seed(0)
    method = make_method(cls, scorer, *STEP_TEST_FLAGS.get(name, ()))
    params = [p for net in method.networks for p in net.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    before = [flat_params(net) for net in method.networks]
    g_phi_before = scorer.parameters_snapshot()
    for step in range(2):
        batch = make_batch(seed=step, unlabeled=cls.needs_unlabeled, strong_views=cls.strong_views)
        for net in method.networks:
            net.train()
        optimizer.zero_grad()
        loss, logs = method.train_step(batch, ACTIVE)
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert all(math.isfinite(float(v)) for v in logs.values()), logs
        assert "loss_sup" in logs
        if cls.needs_unlabeled:
            assert float(unsup_term(logs)) > 0, f"{name}: the unsupervised term is inactive"
        loss.backward()
        optimizer.step()
        method.after_step(step)
    for net, old in zip(method.networks, before):
        assert not torch.equal(flat_params(net), old), f"{name}: a network did not train"
    g_phi_after = scorer.parameters_snapshot()
    assert all(torch.equal(a, b) for a, b in zip(g_phi_before, g_phi_after))
    assert all(p.grad is None for p in scorer.model.parameters())
    if name in ("ours_qar", "unimatch_qar"):  # the QAR term, no weights
        assert "mean_quality" in logs and float(logs["loss_qar"]) > 0
    elif cls.uses_quality:
        assert "mean_quality" in logs and "kept_fraction" in logs
    state = method.state_dict()
    assert len(state["networks"]) == cls.num_networks
    assert ("teacher" in state) == cls.uses_teacher


# --------------------------------------------------------------------------------------
# The paper's methods and the shared quality weighting
# --------------------------------------------------------------------------------------


def test_qar_gradient_reaches_the_student_through_g_phi(scorer):
    method = make_method(METHODS["ours_qar"], scorer)
    method.supervised = lambda logits, batch: logits.sum() * 0.0  # L_sup excluded
    loss, _ = method.train_step(make_batch(), ACTIVE)
    loss.backward()  # lambda * L_qar: only the path through g_phi
    grads = [p.grad for p in method.student.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in scorer.model.parameters())


def test_quality_weights_and_empty_normalised_mean(scorer):
    q = torch.tensor([0.2, 0.49, 0.5, 0.8, 1.0])
    expected = torch.tensor([0.0, 0.0, 0.25, 0.64, 1.0])
    torch.testing.assert_close(quality_weights(q, 0.5, 2.0), expected)
    per_sample = torch.rand(5, requires_grad=True)
    empty = weighted_mean(per_sample, torch.zeros(5))
    assert empty.item() == 0.0
    empty.backward()  # graph-connected
    # PL-QW with a threshold no quality reaches keeps nothing: its term is exactly 0.
    method = make_method(METHODS["ours_pl_qw"], scorer, "--quality_threshold", "1.01")
    _, logs = method.train_step(make_batch(), ACTIVE)
    assert float(logs["loss_unsup"]) == 0.0 and float(logs["kept_fraction"]) == 0.0


def test_pl_c_weights_come_from_confidence(scorer):
    method = make_method(METHODS["pseudo_label_sample_reweighting"], scorer)
    batch = make_batch()
    p_t = method.teacher_probs(batch.x_u)
    c = torch.maximum(p_t, 1 - p_t).flatten(1).mean(1)
    _, logs = method.train_step(batch, ACTIVE)
    torch.testing.assert_close(logs["mean_confidence"], c.mean())
    assert float(logs["kept_fraction"]) == float((c >= 0.9).float().mean())


# The methods built on PL-T's confident-pixel pseudo-labels (PL-T, CL, CL-QW).
PIXEL_PSEUDO_LABELS = [n for n, c in METHODS.items() if issubclass(c, PseudoLabel)]


def test_the_pixel_pseudo_label_methods():
    assert PIXEL_PSEUDO_LABELS == ["pseudo_label", "contrastive", "contrastive_quality"]


@pytest.mark.parametrize("name", PIXEL_PSEUDO_LABELS)
def test_no_confident_pixel_gives_a_zero_pseudo_label_term(name, scorer):
    method = make_method(METHODS[name], scorer, "--confidence_threshold", "1.01")
    loss, logs = method.train_step(make_batch(), ACTIVE)
    assert float(logs["kept_pixel_fraction"]) == 0.0
    assert float(logs.get("loss_pl", logs["loss_unsup"])) == 0.0
    if name != "pseudo_label":  # labeled pixels still give both classes to contrast
        assert float(logs["loss_contrast"]) > 0
    loss.backward()
    assert torch.isfinite(loss)


# --------------------------------------------------------------------------------------
# Teacher-based baselines
# --------------------------------------------------------------------------------------


def test_ema_teacher_moves_toward_the_student(scorer):
    method = make_method(MeanTeacher, scorer)
    optimizer = torch.optim.AdamW(method.student.parameters(), lr=1e-2)
    loss, _ = method.train_step(make_batch(), ACTIVE)
    loss.backward()
    optimizer.step()
    teacher_before = flat_params(method.teacher.model)
    gap_before = (teacher_before - flat_params(method.student)).norm()
    assert gap_before > 0
    method.after_step(0)  # decay 0.5 at step 0
    gap_after = (flat_params(method.teacher.model) - flat_params(method.student)).norm()
    torch.testing.assert_close(gap_after, 0.5 * gap_before)


def test_uamt_uncertainty_threshold_tightens_early():
    assert binary_entropy(torch.tensor([0.0, 1.0])).tolist() == [0.0, 0.0]
    torch.testing.assert_close(binary_entropy(torch.tensor(0.5)), torch.tensor(math.log(2)))
    assert uncertainty_threshold(0.0) == pytest.approx(0.75 * math.log(2))
    assert uncertainty_threshold(1.0) == pytest.approx(math.log(2))
    probs = torch.linspace(0.0, 1.0, 101).view(1, 1, 1, -1)
    early, late = certain_pixels(probs, 0.0), certain_pixels(probs, 1.0)
    assert early.sum() < late.sum()
    assert torch.all(early <= late)  # the early mask is a subset of the late one
    assert early[..., 50] == 0 and late[..., 0] == 1  # 0.5 never kept, 0 always


def test_ict_with_lam_one_is_plain_consistency(scorer):
    method = make_method(InterpolationConsistency, scorer)
    batch = make_batch()
    n = len(batch.x_u)
    method.sample_mix = lambda n, device: (1.0, torch.arange(n - 1, -1, -1))
    _, logs = method.train_step(batch, ACTIVE)
    with torch.no_grad():
        _, logits_u = method.student_forward(batch)  # train mode: same batch statistics
        expected = consistency_loss("mse", torch.sigmoid(logits_u), method.teacher_probs(batch.x_u))
    torch.testing.assert_close(logs["loss_unsup"], expected)
    a = torch.arange(n, dtype=torch.float32)
    perm = torch.tensor([1, 0, 3, 2])
    torch.testing.assert_close(mix(a, perm, 0.25), 0.25 * a + 0.75 * a[perm])


def test_ict_partners_are_a_derangement(scorer):
    method = make_method(InterpolationConsistency, scorer)
    torch.manual_seed(0)
    for n in (2, 3, 8, 17):
        for _ in range(20):
            _, perm = method.sample_mix(n, torch.device("cpu"))
            assert sorted(perm.tolist()) == list(range(n))  # a permutation
            assert not (perm == torch.arange(n)).any()  # nobody mixed with itself


# --------------------------------------------------------------------------------------
# CPS
# --------------------------------------------------------------------------------------


def test_cps_networks_differ_at_init_and_disagree(scorer):
    method = make_method(CrossPseudoSupervision, scorer)
    net_a, net_b = method.networks
    assert not torch.equal(flat_params(net_a), flat_params(net_b))
    assert method.eval_model() is net_a.net  # network A, unwrapped
    _, logs = method.train_step(make_batch(), ACTIVE)
    assert float(logs["disagreement"]) > 0
    twins = make_method(CrossPseudoSupervision, scorer, seeds=(0, 0))
    _, logs = twins.train_step(make_batch(), ACTIVE)
    assert float(logs["disagreement"]) == 0.0  # identical peers: no cross signal


# --------------------------------------------------------------------------------------
# Contrastive
# --------------------------------------------------------------------------------------


def test_pixel_info_nce_prefers_separated_classes():
    torch.manual_seed(0)
    labels = (torch.rand(2, 1, 8, 8) > 0.5).float()
    keep = torch.ones_like(labels)
    centres = torch.eye(8)[:2].view(2, 8, 1, 1)  # class c -> unit vector e_c
    separated = torch.where(labels.bool(), centres[1], centres[0])
    separated = separated + 0.05 * torch.randn_like(separated)
    mixed = torch.randn(2, 8, 8, 8)
    loss_sep, logs = pixel_info_nce(separated, labels, keep, 0.1, 16, 32)
    loss_mix, _ = pixel_info_nce(mixed, labels, keep, 0.1, 16, 32)
    assert float(loss_sep) < 0.01 < float(loss_mix)
    assert logs["contrast_anchors"] == 32.0  # 16 per class


def test_pixel_info_nce_is_zero_without_both_classes():
    features = torch.randn(2, 4, 8, 8, requires_grad=True)
    labels = torch.ones(2, 1, 8, 8)
    loss, _ = pixel_info_nce(features, labels, torch.ones_like(labels))
    assert loss.item() == 0.0
    loss.backward()  # graph-connected
    labels[0, 0, 0, 0] = 0  # a background pixel exists, but is not kept
    keep = torch.ones_like(labels)
    keep[0, 0, 0, 0] = 0
    assert pixel_info_nce(features, labels, keep)[0].item() == 0.0


def test_each_quality_method_names_its_base_without_quality():
    bases = {n: c.quality_base for n, c in METHODS.items() if c.quality_base}
    assert bases == {
        "mean_teacher_quality": "mean_teacher",
        "ict_quality": "ict",
        "cps_quality_weighted": "cps",
        "contrastive_quality": "contrastive",
        "fixmatch_quality": "fixmatch",
        "unimatch_quality": "unimatch",
        "unimatch_qar": "unimatch",
        "ours_qar": "supervised",
        "ours_pl_qw": "pseudo_label_sample_reweighting",
    }
    assert set(bases) == {n for n, c in METHODS.items() if c.uses_quality}
    assert all(not METHODS[b].uses_quality for b in bases.values())
