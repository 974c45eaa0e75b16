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
- The student sees labeled and unlabeled images in one forward (one concatenated batch),
  which is faster and keeps DDP to one forward per backward.
- Losses are computed in float32 (training/losses.py casts) under the loop's autocast.
"""

from __future__ import annotations

import argparse
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
}
# The loop's lambda flags and the release's variables for them, `{}` = QAR or PL_QW.
LAMBDA_VARIABLES = {
    "--lambda_initial": "LAMBDA_INITIAL_{}",
    "--lambda_final": "LAMBDA_FINAL_{}_VALUE",
    "--lambda_warmup": "LAMBDA_WARMUP_{}",
    "--lambda_rampup": "LAMBDA_RAMPUP_{}",
}


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
    """A segmentation network whose forward can also return decoder features.

    DDP only synchronises gradients of computations that went through its `forward`; this
    adapter routes `forward_features` through `forward(x, features=True)`.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, x: torch.Tensor, features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_features(x) if features else self.net(x)


@dataclass(frozen=True)
class Batch:
    """One training step's data on the device: normalised images, float {0, 1} masks."""

    x_l: torch.Tensor  # (B_l, 3, H, W) labeled images
    y_l: torch.Tensor  # (B_l, 1, H, W) their masks
    x_u: torch.Tensor | None  # (B_u, 3, H, W) unlabeled images (weak view), or None


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
    lambda_defaults: ClassVar[tuple[float, float, float, float]] = BASELINE_LAMBDA
    # Which of the release's LAMBDA_* script variables set this method's schedule (None: none).
    lambda_variables: ClassVar[str | None] = "PL_QW"
    script_variables: ClassVar[dict[str, str]] = SCRIPT_VARIABLES
    flags: ClassVar[tuple[Flag, ...]] = ()  # the method's own flags, in --help order

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
        (tau and T of Eqn 7; QAR takes them only because the release's script passes them)."""
        for flag in cls.flags:
            flag.add_to(parser)
        if cls.uses_quality:
            add_quality_weight_arguments(parser)

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
        """The loss of one step and the scalars to log. Base: supervised only."""
        logits_l = self.student(batch.x_l)
        loss_sup = dice_ce_loss(logits_l, batch.y_l)
        return loss_sup, {"loss_sup": loss_sup.detach()}

    # ----------------------------------------------------------------------------------
    # Shared pieces
    # ----------------------------------------------------------------------------------

    def student_forward(self, batch: Batch, x_u: torch.Tensor | None = None, net=None):
        """One forward of `net` (the student) over labeled + unlabeled images.

        Returns (logits_l, logits_u); `x_u` defaults to the batch's unlabeled images.
        """
        net = net or self.student
        x_u = batch.x_u if x_u is None else x_u
        logits = net(torch.cat([batch.x_l, x_u], dim=0))
        return logits[: len(batch.x_l)], logits[len(batch.x_l) :]

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


def _unwrap(net: nn.Module) -> nn.Module:
    """The bare segmentation network inside DDP (`unwrap_model`) and FeatureNet wrappers."""
    net = unwrap_model(net)
    return unwrap_model(net.net) if isinstance(net, FeatureNet) else net


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

METHODS: dict[str, type[SSLMethod]] = {}


def register(cls: type[SSLMethod]) -> type[SSLMethod]:
    """Class decorator: register a method under its `name`, in table-row order."""
    if not cls.name or not cls.acronym:
        raise ValueError(f"{cls.__name__} needs a name and an acronym")
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    clash = [n for n, c in METHODS.items() if c.acronym == cls.acronym or c.row == cls.row]
    if clash:
        raise ValueError(f"{cls.name}: acronym or row already taken by {clash}")
    METHODS[cls.name] = cls
    ordered = sorted(METHODS.values(), key=lambda c: c.row)
    METHODS.clear()
    METHODS.update((c.name, c) for c in ordered)
    return cls


def get_method(name: str) -> type[SSLMethod]:
    """Look a method up by name (or acronym); an unknown one lists the valid names."""
    from training import methods as _  # noqa: F401 - importing the package registers all

    if name in METHODS:
        return METHODS[name]
    by_acronym = {cls.acronym.lower(): cls for cls in METHODS.values()}
    if name.lower() in by_acronym:
        return by_acronym[name.lower()]
    valid = ", ".join(f"{n} ({c.acronym})" for n, c in METHODS.items())
    raise ValueError(f"unknown method {name!r}; valid: {valid}")
