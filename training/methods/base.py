"""The common interface of every semi-supervised method, and the name registry.

One training loop (training/train_semisup.py) owns data, optimiser, schedules, mixed
precision, evaluation and checkpoints; a method only says what it computes in one step
(USB's design): `train_step(batch, info) -> (loss, logs)`. Methods register under the
release's names (`supervised`, `mean_teacher`, ..., `ours_qar`) and declare their own
command-line flags and their lambda schedule defaults (docs/METHOD.md §4.3).

Conventions:
- Networks output logits (B, 1, H, W); probabilities are sigmoid(logits).
- Every network forward goes through the (possibly DDP-wrapped) network object; when a
  method needs decoder features it calls `net(x, features=True)` (see `FeatureNet`), so
  DistributedDataParallel sees every forward that produces gradients.
- By default the student sees labeled and unlabeled images in one forward (one
  concatenated batch, the release's way), which is faster and keeps DDP to one forward per
  backward; `--bn_forward` (every method, `BN_FORWARD_CHOICES`) chooses how BatchNorm sees D_L and
  D_U instead (docs/METHOD.md §4.7).
- Losses are computed in float32 (training/losses.py casts) under the loop's autocast.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from models.ema import EMATeacher, unwrap_model
from training.losses import dice_ce_loss
from training.methods.quality import add_quality_weight_arguments, quality_weights

# Lambda schedule defaults (initial, final, warmup epochs, ramp-up epochs), docs/METHOD.md §4.3.
BASELINE_LAMBDA = (0.0, 0.25, 15, 30)
QAR_LAMBDA = (0.0, 0.01, 30, 40)

# The release's train_SSL_methods.sh variables, by the flag they set (a method takes those
# of its flags that appear here; a few methods read another variable for a flag).
SCRIPT_VARIABLES = {
    "--confidence_threshold": "CONFIDENCE_THRESHOLD_PSEUDO",
    "--confidence_temperature": "CONFIDENCE_TEMPERATURE_PSEUDO_SR",
    "--consistency_type": "CONSISTENCY_TYPE",
    "--ict_alpha": "ICT_ALPHA",
    "--lambda_contrast": "LAMBDA_CONTRAST",
    "--contrast_temperature": "TEMPERATURE_CONTRAST",
    "--num_negatives": "NUM_NEGATIVES_CONTRAST",
    "--quality_threshold": "QUALITY_THRESHOLD_SR",
    "--quality_temperature": "QUALITY_TEMPERATURE_SR",
    "--bn_forward": "BN_FORWARD",
}
# The loop's lambda flags and the release's variables for them, `{}` = QAR or PL_QW.
LAMBDA_VARIABLES = {
    "--lambda_initial": "LAMBDA_INITIAL_{}",
    "--lambda_final": "LAMBDA_FINAL_{}_VALUE",
    "--lambda_warmup": "LAMBDA_WARMUP_{}",
    "--lambda_rampup": "LAMBDA_RAMPUP_{}",
}


# --bn_forward: how the student's labeled and unlabeled images pass BatchNorm (§4.7).
BN_FORWARD_CHOICES = ("mixed", "separate", "labeled_stats")
BN_FORWARD_HELP = (
    "how BatchNorm sees D_L and D_U: mixed (one forward of both, the release's), separate "
    "(two forwards, labeled then unlabeled), labeled_stats (two forwards, running statistics "
    "from the labeled one only)"
)


@dataclass(frozen=True)
class Flag:
    """One of a method's own command-line flags: `name` with its `default`, whose type is
    the flag's type, or one of `choices`."""

    name: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.choices is None:
            kind = {"type": type(self.default)}
        else:
            kind = {"choices": list(self.choices)}
        parser.add_argument(self.name, **kind, default=self.default, help=self.help)


class FeatureNet(nn.Module):
    """A segmentation network whose forward can also return decoder features, or logits of
    UniMatch's feature-perturbed stream.

    DDP only synchronises gradients of computations that went through its `forward`; this
    adapter routes `forward_features` through `forward(x, features=True)` and
    `forward_perturbed` through `forward(x, perturb=start, p=p)`.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        x: torch.Tensor,
        features: bool = False,
        perturb: int | None = None,
        p: float = 0.5,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if perturb is not None:
            return self.net.forward_perturbed(x, start=perturb, p=p)
        return self.net.forward_features(x) if features else self.net(x)


@dataclass(frozen=True)
class Batch:
    """One training step's data on the device: normalised images, float {0, 1} masks."""

    x_l: torch.Tensor  # (B_l, 3, H, W) labeled images
    y_l: torch.Tensor  # (B_l, 1, H, W) their masks
    x_u: torch.Tensor | None  # (B_u, 3, H, W) unlabeled images (weak view), or None
    # Strong views of x_u and their CutMix boxes, one (B_u, 3, H, W) and one (B_u, 1, H, W)
    # float {0, 1} tensor per view (methods with `strong_views`; docs/METHOD.md §7.6).
    x_s: tuple[torch.Tensor, ...] = ()
    boxes: tuple[torch.Tensor, ...] = ()
    # Task indices (B_l,) and (B_u,) of a multi-task run (VerSemi, docs/METHOD.md §11).
    t_l: torch.Tensor | None = None
    t_u: torch.Tensor | None = None


@dataclass(frozen=True)
class StepInfo:
    """Where training stands: global step, fractional epoch, lambda(t) and its ramp."""

    step: int
    epoch: float
    lam: float
    ramp: float  # lambda(t) / lambda_final in [0, 1] (UA-MT's threshold schedule)


Logs = dict[str, float]


class SSLMethod:
    """Base class: supervised DiceCE on the labeled batch, nothing on the unlabeled one."""

    name: ClassVar[str] = ""
    acronym: ClassVar[str] = ""
    row: ClassVar[int] = 10_000  # position in the paper's tables; the registry's order
    needs_unlabeled: ClassVar[bool] = True
    # Reads g_phi; such a method also takes tau and T of Eqn 7 (see `add_arguments`).
    uses_quality: ClassVar[bool] = False
    uses_teacher: ClassVar[bool] = False
    num_networks: ClassVar[int] = 1
    # Strong views (and CutMix boxes) per unlabeled image the loop must load (§7.6).
    strong_views: ClassVar[int] = 0
    # The method without quality guidance that this one adds it to (tables' paired tests).
    quality_base: ClassVar[str | None] = None
    lambda_defaults: ClassVar[tuple[float, float, float, float]] = BASELINE_LAMBDA
    # Which of the release's LAMBDA_* script variables set this method's schedule (None: none).
    lambda_variables: ClassVar[str | None] = "PL_QW"
    script_variables: ClassVar[dict[str, str]] = SCRIPT_VARIABLES
    flags: ClassVar[tuple[Flag, ...]] = ()  # the method's own flags, in --help order
    # --bn_forward's default and choices (SUP adds `labeled_only`, its default).
    bn_forward_default: ClassVar[str] = "mixed"
    bn_forward_choices: ClassVar[tuple[str, ...]] = BN_FORWARD_CHOICES
    # Trains over a task table (`--task_table`, several data sets; docs/METHOD.md §11),
    # with a task-prompted network when `prompted`. Such methods live in their own
    # registry (`MULTITASK_METHODS`): the single-data-set scripts and tables skip them.
    multitask: ClassVar[bool] = False
    prompted: ClassVar[bool] = False
    # The optimiser's betas unless --betas is given (AdamW's own; VerSemi's Adam differs).
    adam_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)

    @classmethod
    def own_flags(cls) -> list[str]:
        """The long option strings of this method's own flags."""
        parser = argparse.ArgumentParser(add_help=False)
        cls.add_arguments(parser)
        return [o for a in parser._actions for o in a.option_strings if o.startswith("--")]

    @classmethod
    def script_arguments(cls, environ: dict[str, str]) -> list[str]:
        """The flags for the script variables set (non-empty) in `environ`, and only those:
        every other setting keeps the one default it has here."""
        pairs = [(f, v) for f, v in cls.script_variables.items() if f in cls.own_flags()]
        if cls.lambda_variables:
            pairs += [(f, v.format(cls.lambda_variables)) for f, v in LAMBDA_VARIABLES.items()]
        return [
            a for flag, var in pairs if environ.get(var, "") != "" for a in (flag, environ[var])
        ]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Declare this method's own flags (called only for the selected method): `flags`,
        then, for a method that reads g_phi, --quality_threshold and --quality_temperature
        (tau and T of Eqn 7; QAR takes them only because the release's script passes them),
        then --bn_forward, which every method takes (docs/METHOD.md §4.7)."""
        for flag in cls.flags:
            flag.add_to(parser)
        if cls.uses_quality:
            add_quality_weight_arguments(parser)
        Flag(
            "--bn_forward", cls.bn_forward_default, BN_FORWARD_HELP, cls.bn_forward_choices
        ).add_to(parser)

    @classmethod
    def loads_unlabeled(cls, args: argparse.Namespace) -> bool:
        """Whether the loop must load D_U for this run: the method needs it, or SUP forwards
        it for BatchNorm's sake (`--bn_forward` other than `labeled_only`, §4.7)."""
        mode = getattr(args, "bn_forward", cls.bn_forward_default)
        return cls.needs_unlabeled or mode != "labeled_only"

    def __init__(
        self,
        args: argparse.Namespace,
        networks: list[nn.Module],
        quality: Any | None = None,
    ) -> None:
        if len(networks) != self.num_networks:
            raise ValueError(
                f"{self.name} trains {self.num_networks} network(s), got {len(networks)}"
            )
        if self.uses_quality and quality is None:
            raise ValueError(f"{self.name} needs g_phi: pass --mq_checkpoint")
        self.args = args
        self.networks = networks
        self.student = networks[0]
        self.quality = quality
        # A Namespace built before --bn_forward existed gets the release's behaviour.
        self.bn_forward = getattr(args, "bn_forward", self.bn_forward_default)
        self.teacher: EMATeacher | None = None
        if self.uses_teacher:
            self.teacher = EMATeacher(
                _unwrap(self.student),
                final_decay=args.ema_decay,
                initial_decay=args.ema_initial_decay,
                warmup_steps=args.ema_warmup_steps,
            )

    # ----------------------------------------------------------------------------------
    # What a method defines
    # ----------------------------------------------------------------------------------

    def train_step(self, batch: Batch, info: StepInfo) -> tuple[torch.Tensor, Logs]:
        """The loss of one step and the scalars to log. Base: supervised only (Eqn 4).

        With a `--bn_forward` other than `labeled_only` (SUP's control, §4.7) the unlabeled
        batch is forwarded too and its output discarded, so BatchNorm sees D_U as it does
        in the SSL methods.
        """
        if self.bn_forward == "labeled_only":
            logits_l = self.student(batch.x_l)
        else:
            if batch.x_u is None:
                raise ValueError(
                    f"--bn_forward {self.bn_forward} forwards D_U, but the batch has no "
                    "unlabeled images: pass --unlabeled_csv"
                )
            logits_l, _ = self.student_forward(batch)
        loss_sup = dice_ce_loss(logits_l, batch.y_l)
        return loss_sup, {"loss_sup": loss_sup.detach()}

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """The parameter groups whose gradient norms are clipped separately (docs/METHOD.md
        §9): one group of every trainable parameter; CPS clips each network on its own."""
        return [[p for net in self.networks for p in net.parameters() if p.requires_grad]]

    # ----------------------------------------------------------------------------------
    # Shared pieces
    # ----------------------------------------------------------------------------------

    def student_forward(
        self,
        batch: Batch,
        x_u: torch.Tensor | None = None,
        net: nn.Module | None = None,
        features: bool = False,
        perturb: float | None = None,
    ):
        """`net` (the student) on labeled and unlabeled images, as --bn_forward says (§4.7):

        - mixed: one forward of the concatenated batch (BatchNorm's batch and running
          statistics mix D_L and D_U; the release's way);
        - separate: a forward of x_l, then one of x_u (each normalised by its own batch
          statistics; the running statistics see both);
        - labeled_stats: as separate, but the x_u forward leaves the running statistics
          untouched (`frozen_bn_stats`), so evaluation normalises with D_L's only.

        Returns (logits_l, logits_u), or with `features` ((logits_l, feats_l), (logits_u,
        feats_u)), or with `perturb` = p (logits_l, (logits_u, logits of x_u's features
        through Dropout2d(p), UniMatch's stream, same forward)); `x_u` defaults to the
        batch's unlabeled images.
        """
        net = net or self.student
        x_u = batch.x_u if x_u is None else x_u
        n_l = len(batch.x_l)
        if perturb is not None:
            if self.bn_forward == "mixed":
                logits, fp_u = net(torch.cat([batch.x_l, x_u], dim=0), perturb=n_l, p=perturb)
                return logits[:n_l], (logits[n_l:], fp_u)
            out_l = net(batch.x_l)
            return out_l, self.unlabeled_forward(x_u, net, perturb=0, p=perturb)
        run = (lambda x: net(x, features=True)) if features else net
        if self.bn_forward == "mixed":
            out = run(torch.cat([batch.x_l, x_u], dim=0))
            if features:
                return (out[0][:n_l], out[1][:n_l]), (out[0][n_l:], out[1][n_l:])
            return out[:n_l], out[n_l:]
        out_l = run(batch.x_l)
        if self.bn_forward == "labeled_stats":
            with frozen_bn_stats(net):
                return out_l, run(x_u)
        return out_l, run(x_u)

    def unlabeled_forward(self, x: torch.Tensor, net: nn.Module | None = None, **kwargs: Any):
        """`net` (the student) on unlabeled images alone (FixMatch's strong views; `kwargs`
        go to the network's forward): under --bn_forward labeled_stats the running
        statistics are left untouched, as for x_u in `student_forward` (§4.7)."""
        net = net or self.student
        if self.bn_forward == "labeled_stats":
            with frozen_bn_stats(net):
                return net(x, **kwargs)
        return net(x, **kwargs)

    def supervised(self, logits_l: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Eqn 4: DiceCE on the labeled batch."""
        return dice_ce_loss(logits_l, batch.y_l)

    @staticmethod
    def objective(
        info: StepInfo, loss_sup: torch.Tensor, loss_unsup: torch.Tensor, logs: Logs
    ) -> tuple[torch.Tensor, Logs]:
        """L = L_sup + lambda(t) L_u, and the step's logs: both terms, then `logs`."""
        loss = loss_sup + info.lam * loss_unsup
        return loss, {"loss_sup": loss_sup.detach(), "loss_unsup": loss_unsup.detach(), **logs}

    def quality_weighting(
        self, x_u: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, w): g_phi's quality of the hard `labels` of x_u (no gradient) and the sample
        weights w = q^T 1[q >= tau] of Eqn 7 (--quality_threshold, --quality_temperature)."""
        q = self.quality(x_u, labels)
        return q, quality_weights(q, self.args.quality_threshold, self.args.quality_temperature)

    @torch.no_grad()
    def teacher_probs(self, x: torch.Tensor) -> torch.Tensor:
        """EMA teacher probabilities (no gradient)."""
        return torch.sigmoid(self.teacher(x).float())

    def after_step(self, step: int) -> None:
        """Called after each optimiser step: update the EMA teacher."""
        if self.teacher is not None:
            self.teacher.update(_unwrap(self.student), step)

    def eval_model(self) -> nn.Module:
        """The network that is validated, selected and tested (the student)."""
        return _unwrap(self.student)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"networks": [_unwrap(n).state_dict() for n in self.networks]}
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for net, sd in zip(self.networks, state["networks"]):
            _unwrap(net).load_state_dict(sd)
        if self.teacher is not None and "teacher" in state:
            self.teacher.load_state_dict(state["teacher"])


@contextmanager
def frozen_bn_stats(net: nn.Module) -> Iterator[None]:
    """BatchNorm layers of `net` normalise with their batch statistics (in train mode) but
    leave running_mean, running_var and num_batches_tracked as they are (§4.7).

    With track_running_stats False a training-mode BatchNorm uses the batch statistics
    and passes no running buffers to F.batch_norm, nor counts the batch: exactly "use
    but do not record" (momentum 0 would still count num_batches_tracked).
    """
    layers = [
        m
        for m in net.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


def _unwrap(net: nn.Module) -> nn.Module:
    """The bare segmentation network inside DDP (`unwrap_model`) and FeatureNet wrappers."""
    net = unwrap_model(net)
    return unwrap_model(net.net) if isinstance(net, FeatureNet) else net


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

METHODS: dict[str, type[SSLMethod]] = {}
MULTITASK_METHODS: dict[str, type[SSLMethod]] = {}


def every_method() -> dict[str, type[SSLMethod]]:
    """Both registries in table order: the single-data-set methods, then the multi-task ones."""
    return {**METHODS, **MULTITASK_METHODS}


def register(cls: type[SSLMethod]) -> type[SSLMethod]:
    """Class decorator: register a method under its `name`, in table-row order (a
    multi-task one in MULTITASK_METHODS); names, acronyms and rows are unique across both."""
    if not cls.name or not cls.acronym:
        raise ValueError(f"{cls.__name__} needs a name and an acronym")
    every = every_method()
    if cls.name in every:
        raise ValueError(f"method {cls.name!r} registered twice")
    clash = [n for n, c in every.items() if c.acronym == cls.acronym or c.row == cls.row]
    if clash:
        raise ValueError(f"{cls.name}: acronym or row already taken by {clash}")
    registry = MULTITASK_METHODS if cls.multitask else METHODS
    registry[cls.name] = cls
    ordered = sorted(registry.values(), key=lambda c: c.row)
    registry.clear()
    registry.update((c.name, c) for c in ordered)
    return cls


def get_method(name: str) -> type[SSLMethod]:
    """Look a method up by name (or acronym); an unknown one lists the valid names."""
    from training import methods as _  # noqa: F401 - importing the package registers all

    every = every_method()
    if name in every:
        return every[name]
    by_acronym = {cls.acronym.lower(): cls for cls in every.values()}
    if name.lower() in by_acronym:
        return by_acronym[name.lower()]
    valid = ", ".join(f"{n} ({c.acronym})" for n, c in every.items())
    raise ValueError(f"unknown method {name!r}; valid: {valid}")
