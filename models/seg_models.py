"""Segmentation networks f_theta for Phase 2 (docs/METHOD.md §4): one table, :data:`SEG_MODELS`,
in the paper's column order, and one factory, :func:`create_seg_model`.

- ``unetpp`` (UP): U-Net++ from segmentation_models_pytorch, :mod:`models.unetpp`.
- ``attentionunet`` (AU): U-Net with additive attention gates on the skips (Oktay et al.
  2018), :mod:`models.attention_unet`.
- ``swinunet`` (SU): Swin-UNet (Cao et al. 2021) with a Swin-T encoder, :mod:`models.swin_unet`.

What every model returns (logits, ``forward_features``) is :mod:`models.common`'s convention.

Arguments. Each entry's builder declares, by its signature, the arguments its model takes
(:attr:`SegModelSpec.arguments`), and the factory passes each model only its own: only the
CNNs take ``encoder`` and ``decoder_channels``; only Swin-UNet takes
``swin_pretrained_path``, ``decoder_depths``, ``drop_path_rate`` and ``skip_source``. An
argument the chosen model does not take is dropped when it holds its default (None, or the
default of the models that take it, so one call with shared settings serves every model) and
is an **error** otherwise, naming the model and the argument: a setting that silently does
nothing makes a run look like what it is not, and a warning scrolls away in a training log.

This module loads without torch (the networks are imported when built), so that

    python models/seg_models.py --list      # name<TAB>acronym<TAB>arguments, paper's order

answers at once for shell scripts.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

if TYPE_CHECKING:
    from torch import nn

DEFAULT_ENCODER = "resnet34"  # the paper's CNN encoder
DEFAULT_ENCODER_WEIGHTS = "imagenet"
DEFAULT_IMAGE_SIZE = 224


@dataclass(frozen=True)
class SegModelSpec:
    """One segmentation model of the paper: an entry of :data:`SEG_MODELS`."""

    name: str  # as the release's SEG_MODELS variable spells it
    acronym: str  # the paper's
    column: int  # position among the models in the paper's results tables, 0 first
    builder: Callable[..., nn.Module]  # keyword arguments only, each with a default
    check: Callable[..., list[str]]  # what is wrong with the builder's arguments, pre-build
    # argument -> default, read from the builder's signature
    arguments: Mapping[str, Any] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        params = inspect.signature(self.builder).parameters.values()
        object.__setattr__(self, "arguments", MappingProxyType({p.name: p.default for p in params}))


def normalise_encoder_weights(encoder_weights: str | None) -> str | None:
    """Map the bash-friendly spellings of "no pretrained weights" ("none", "", "null") to None."""
    if encoder_weights is None or str(encoder_weights).lower() in ("none", "", "null", "false"):
        return None
    return str(encoder_weights)


def _given(**options: Any) -> dict[str, Any]:
    """The options that are set: None leaves the network class's own default."""
    return {k: v for k, v in options.items() if v is not None}


# Builders: called by create_seg_model with every argument checked; the network modules are
# imported on use, so that the table loads without torch.
_CNN_CLASSES = {
    "unetpp": ("models.unetpp", "UnetPlusPlus"),
    "attentionunet": ("models.attention_unet", "AttentionUNet"),
}


def _build_cnn(
    name: str,
    encoder: str = DEFAULT_ENCODER,
    encoder_weights: str | None = DEFAULT_ENCODER_WEIGHTS,
    image_size: int = DEFAULT_IMAGE_SIZE,
    decoder_channels: Sequence[int] | None = None,
) -> nn.Module:
    """U-Net++ or Attention U-Net (``name``, bound in the table) on an smp encoder."""
    import torch

    from models.common import check_input_shape

    module, class_name = _CNN_CLASSES[name]
    model = getattr(importlib.import_module(module), class_name)(
        encoder_name=encoder,
        encoder_weights=encoder_weights,
        **_given(decoder_channels=decoder_channels),
    )
    # an image size the CNN cannot take fails at build time, not at the first batch
    check_input_shape(torch.empty(0, 3, image_size, image_size), name, model.encoder.output_stride)
    return model


def _build_swin_unet(
    encoder_weights: str | None = DEFAULT_ENCODER_WEIGHTS,
    image_size: int = DEFAULT_IMAGE_SIZE,
    swin_pretrained_path: str | None = None,
    decoder_depths: Sequence[int] | None = None,
    drop_path_rate: float | None = None,
    skip_source: str | None = None,
) -> nn.Module:
    from models.pretrained import is_weights_file
    from models.swin_unet import SwinUNet
    from models.swin_unet_utils import load_swin_pretrained

    # The encoder is always Swin-T; its ImageNet weights come from the official checkpoint
    # file, not from smp/timm.
    if encoder_weights is None and swin_pretrained_path:
        print(
            f"swinunet: encoder_weights is none, so random init; "
            f"--swin_pretrained_path {swin_pretrained_path} is not loaded"
        )
    if is_weights_file(encoder_weights):
        # One ENCODER_WEIGHTS file serves a whole grid's CNN encoders; Swin-T has its own.
        print(
            f"swinunet: encoder_weights {encoder_weights} is a weights file for the CNN "
            f"encoders; Swin-UNet loads its own Swin-T checkpoint, --swin_pretrained_path "
            f"{swin_pretrained_path}"
        )
    model = SwinUNet(
        image_size=image_size,
        **_given(
            decoder_depths=decoder_depths, drop_path_rate=drop_path_rate, skip_source=skip_source
        ),
    )
    if encoder_weights is not None:
        load_swin_pretrained(model, swin_pretrained_path)
    return model


def _cnn_problems(encoder: str, encoder_weights: str | None = None, **_: Any) -> list[str]:
    from segmentation_models_pytorch.encoders import get_encoder_names

    from models.pretrained import is_weights_file

    if is_weights_file(encoder_weights) and not Path(str(encoder_weights)).is_file():
        return [f"encoder_weights file not found: {encoder_weights} (imagenet, none or a file)"]
    if not str(encoder).startswith("tu-") and encoder not in get_encoder_names():
        return [
            f"unknown smp encoder {encoder!r}; use one of smp's encoders (e.g. resnet18, "
            f"resnet34, resnet50, efficientnet-b0, mit_b0; full list: "
            f"segmentation_models_pytorch.encoders.get_encoder_names()) or 'tu-<timm name>'"
        ]
    return []


def _swin_problems(
    encoder_weights: str | None, image_size: int, swin_pretrained_path: str | None, **_: Any
) -> list[str]:
    from models.swin_unet import stage_window_sizes
    from models.swin_unet_utils import swin_checkpoint_problem

    problems = []
    if encoder_weights is not None:
        if not swin_pretrained_path:
            problems.append(
                "swinunet with encoder_weights='imagenet' needs --swin_pretrained_path, the "
                "official Swin-T checkpoint swin_tiny_patch4_window7_224_22k.pth; pass "
                "encoder_weights none for a random init"
            )
        else:
            problem = swin_checkpoint_problem(swin_pretrained_path)
            problems += [problem] if problem else []
    try:
        stage_window_sizes(image_size)
    except ValueError as err:
        problems.append(str(err))
    return problems


SEG_MODELS: dict[str, SegModelSpec] = {
    spec.name: spec
    for spec in sorted(
        (
            SegModelSpec("unetpp", "UP", 0, partial(_build_cnn, "unetpp"), _cnn_problems),
            SegModelSpec(
                "attentionunet", "AU", 1, partial(_build_cnn, "attentionunet"), _cnn_problems
            ),
            SegModelSpec("swinunet", "SU", 2, _build_swin_unet, _swin_problems),
        ),
        key=lambda spec: spec.column,
    )
}

# A view of the table: name -> acronym.
SEG_MODEL_ACRONYMS: dict[str, str] = {name: spec.acronym for name, spec in SEG_MODELS.items()}


def _argument_defaults(specs: Iterable[SegModelSpec]) -> dict[str, Any]:
    """Every argument some model takes -> its default (the same for every model taking it)."""
    defaults: dict[str, Any] = {}
    for spec in specs:
        for arg, default in spec.arguments.items():
            if defaults.setdefault(arg, default) != default:
                raise RuntimeError(f"the SEG_MODELS builders disagree on the default of {arg}")
    return defaults


SEG_MODEL_ARGUMENTS: dict[str, Any] = _argument_defaults(SEG_MODELS.values())


def resolve_seg_model(name: str) -> SegModelSpec:
    """The table entry for a name or acronym (case-insensitive); ValueError listing the valid."""
    key = str(name).lower()
    for spec in SEG_MODELS.values():
        if key in (spec.name, spec.acronym.lower()):
            return spec
    valid = ", ".join(f"{spec.name} ({spec.acronym})" for spec in SEG_MODELS.values())
    raise ValueError(f"unknown segmentation model {name!r}; valid names: {valid}")


def seg_model_acronym(name: str) -> str:
    """The paper's acronym (UP, AU, SU) of a model name or acronym."""
    return resolve_seg_model(name).acronym


def _model_arguments(spec: SegModelSpec, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The builder's arguments (defaults filled in), or ValueError naming every problem."""
    problems = []
    arguments = dict(spec.arguments)
    for arg, value in kwargs.items():
        if arg in spec.arguments:
            arguments[arg] = value
        elif arg not in SEG_MODEL_ARGUMENTS:
            problems.append(
                f"no segmentation model takes the argument {arg!r}; the arguments are "
                f"{', '.join(SEG_MODEL_ARGUMENTS)}"
            )
        elif value is not None and value != SEG_MODEL_ARGUMENTS[arg]:
            problems.append(
                f"{spec.name} ({spec.acronym}) does not take {arg} (got {value!r}); leave it "
                f"unset for {spec.name}, whose arguments are {', '.join(spec.arguments)}"
            )
    if "encoder_weights" in arguments:
        arguments["encoder_weights"] = normalise_encoder_weights(arguments["encoder_weights"])
    if "image_size" in arguments:
        arguments["image_size"] = int(arguments["image_size"])
    problems += spec.check(**arguments)
    if problems:
        raise ValueError("; ".join(problems))
    return arguments


def check_seg_model_args(name: str, **kwargs: Any) -> SegModelSpec:
    """Check a :func:`create_seg_model` call without building anything (no weights are read,
    no random numbers drawn): the name, which arguments the model takes, the encoder name, and
    for Swin-UNet the image size and the checkpoint file. ValueError naming every problem
    found; returns the table entry. The CNNs' image size is checked when they are built.
    """
    spec = resolve_seg_model(name)
    _model_arguments(spec, kwargs)
    return spec


def create_seg_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the segmentation network ``name`` (a key of SEG_MODELS or an acronym UP/AU/SU).

    Args:
        name: ``unetpp``, ``attentionunet`` or ``swinunet`` (case-insensitive), or an acronym.
        **kwargs: the model's own arguments (see the module doc for one it does not take):
            encoder: smp encoder of the CNNs (``resnet34``, the paper's; ``tu-<timm name>``).
            encoder_weights: "imagenet" (default) or None / "none" (random init, every model);
                for the CNNs also a local weights file (:mod:`models.pretrained`).
                For Swin-UNet "imagenet" means: load ``swin_pretrained_path``.
            image_size: input resolution (224); Swin-UNet is built for exactly this size.
            decoder_channels: the CNNs' decoder widths (smp's 256, 128, 64, 32, 16).
            swin_pretrained_path: the official ``swin_tiny_patch4_window7_224_22k.pth``.
            decoder_depths, drop_path_rate, skip_source: Swin-UNet's
                (:class:`models.swin_unet.SwinUNet`).

    Raises:
        ValueError: as :func:`check_seg_model_args`, and for a CNN's image size.
    """
    spec = resolve_seg_model(name)
    return spec.builder(**_model_arguments(spec, kwargs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="The segmentation models f_theta (docs/METHOD.md §4)."
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print one line per model, name<TAB>acronym<TAB>its arguments (comma-"
        "separated), in the paper's column order",
    )
    args = parser.parse_args(argv)
    if not args.list:
        parser.print_help()
        return
    for spec in SEG_MODELS.values():
        print(f"{spec.name}\t{spec.acronym}\t{','.join(spec.arguments)}")


if __name__ == "__main__":
    main()
