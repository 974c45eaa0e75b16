"""Load the official Swin-T ImageNet-22k checkpoint into Swin-UNet (docs/METHOD.md §4:
``swin_tiny_patch4_window7_224_22k.pth``, state dict under "model").

Mapping:
- Encoder: timm's ``checkpoint_filter_fn`` converts the official layout to timm's (the
  official layout merges patches at the END of stage i, ``layers.i.downsample``; timm at the
  START of stage i+1, ``layers.{i+1}.downsample``; ``head`` becomes ``head.fc``), drops the
  non-persistent buffers (``relative_position_index``, ``attn_mask``) and resizes relative
  position bias tables to the model's window (Swin-UNet adapts the window at sizes other than
  224, see :mod:`models.swin_unet`).
- Decoder: as in the official Swin-UNet, decoder level i takes the block weights of encoder
  stage i (``layers.i.blocks.j`` -> ``decoder.i.blocks.j`` for j below the level's depth) where
  shapes match.
- The 22k classifier head is not used. Everything is reported: loaded, resized, skipped (with
  the reason) and model tensors left at their initialisation.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from timm.models.swin_transformer import checkpoint_filter_fn
from torch import nn

_BUFFER_NAMES = ("relative_position_index", "attn_mask")  # as timm's filter drops them
_BLOCK_KEY = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_EXPECTED = (
    "the official Swin Transformer checkpoint layout (e.g. swin_tiny_patch4_window7_224_22k.pth):"
    " a dict whose state dict sits under the key 'model', with keys such as "
    "patch_embed.proj.weight, layers.0.blocks.0.attn.qkv.weight, "
    "layers.0.downsample.reduction.weight, norm.weight"
)


@dataclass
class SwinLoadReport:
    """What :func:`load_swin_pretrained` did. Keys are model keys unless said otherwise."""

    path: str
    loaded_encoder: list[str] = field(default_factory=list)
    loaded_decoder: list[str] = field(default_factory=list)  # mirrored encoder blocks
    resized: list[str] = field(default_factory=list)  # bias tables resized to the window
    skipped: dict[str, str] = field(default_factory=dict)  # checkpoint key -> reason
    not_initialised: list[str] = field(default_factory=list)  # left at random init

    @property
    def num_loaded(self) -> int:
        return len(self.loaded_encoder) + len(self.loaded_decoder)

    def summary(self, max_names: int = 4) -> str:
        lines = [
            f"Swin checkpoint {self.path}: loaded {self.num_loaded} tensors "
            f"({len(self.loaded_encoder)} encoder, {len(self.loaded_decoder)} decoder mirrored "
            f"from the encoder; {len(self.resized)} relative position bias tables resized), "
            f"skipped {len(self.skipped)} checkpoint keys, "
            f"{len(self.not_initialised)} model tensors left at init"
        ]
        by_reason: dict[str, list[str]] = defaultdict(list)
        for key, reason in self.skipped.items():
            by_reason[reason].append(key)
        for reason, keys in by_reason.items():
            lines.append(f"  skipped {len(keys)} ({reason}): {_brief(keys, max_names)}")
        if self.not_initialised:
            lines.append(f"  left at init: {_brief(self.not_initialised, max_names)}")
        return "\n".join(lines)


def _brief(keys: list[str], max_names: int) -> str:
    shown = ", ".join(keys[:max_names])
    return shown + (f", ... (+{len(keys) - max_names})" if len(keys) > max_names else "")


def swin_checkpoint_problem(path: str) -> str | None:
    """What is wrong with ``path`` as the Swin checkpoint, or None: the one check of the path,
    run before training starts (:func:`models.seg_models.check_seg_model_args`) and on loading.
    """
    if not os.path.isfile(path):
        return (
            f"Swin checkpoint {path!r} (--swin_pretrained_path) does not exist; expected the "
            f"official Swin-T checkpoint swin_tiny_patch4_window7_224_22k.pth"
        )
    return None


def read_swin_state_dict(path: str, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read the Swin state dict from ``path``; clear errors for a missing or foreign file."""
    problem = swin_checkpoint_problem(path)
    if problem:
        raise FileNotFoundError(problem)
    try:
        # weights_only: a downloaded file should not run code; the official files hold tensors.
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        hint = (
            ""
            if allow_pickle
            else (
                " If it is a trusted checkpoint holding non-tensor objects, pass allow_pickle=True."
            )
        )
        raise ValueError(
            f"could not read {path!r} as a PyTorch checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); expected {_EXPECTED}.{hint}"
        ) from err
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        state_dict = checkpoint["model"]
    else:
        state_dict = checkpoint  # a bare state dict is accepted if it holds the Swin keys
    if not isinstance(state_dict, dict) or not _looks_like_swin(state_dict):
        found = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint)
        raise ValueError(
            f"{path!r} is not a Swin Transformer checkpoint: expected {_EXPECTED}; "
            f"found top-level keys {found}"
        )
    return state_dict


def _looks_like_swin(state_dict: dict) -> bool:
    return "patch_embed.proj.weight" in state_dict and any(
        _BLOCK_KEY.match(str(k)) for k in state_dict
    )


def load_swin_pretrained(
    model: nn.Module, path: str, allow_pickle: bool = False, verbose: bool = True
) -> SwinLoadReport:
    """Initialise a :class:`models.swin_unet.SwinUNet` from an official Swin checkpoint.

    Args:
        model: a SwinUNet (``model.encoder`` a timm SwinTransformer, ``model.decoder[i].blocks``).
        path: the checkpoint file (``--swin_pretrained_path``).
        allow_pickle: read with ``weights_only=False`` (only for trusted files).
        verbose: print the report's summary.

    Returns:
        A :class:`SwinLoadReport`.
    """
    source = read_swin_state_dict(path, allow_pickle)
    report = SwinLoadReport(path=str(path))
    encoder_sd = model.encoder.state_dict()
    model_sd = model.state_dict()

    kept = [k for k in source if not any(n in k for n in _BUFFER_NAMES)]
    for key in source:
        if key not in kept:
            report.skipped[key] = "buffer, recomputed by the model"
    try:
        with warnings.catch_warnings():
            # torch deprecation notices from inside timm's bias-table interpolation: not ours
            warnings.filterwarnings(
                "ignore", category=UserWarning, module=r"timm\.layers\.interpolate"
            )
            mapped = checkpoint_filter_fn({k: source[k] for k in kept}, model.encoder)
    except (AttributeError, RuntimeError, KeyError) as err:
        raise ValueError(
            f"{path!r} does not fit the Swin-UNet encoder (Swin-T: embed 96, depths 2,2,6,2): {err}"
        ) from err
    # The filter keeps the order of its input and renames one to one, so zip pairs the names.
    if len(mapped) != len(kept):
        raise ValueError(f"unexpected key collision while mapping {path!r} onto the encoder")

    new_sd: dict[str, torch.Tensor] = {}
    for old_key, (new_key, value) in zip(kept, mapped.items()):
        if new_key not in encoder_sd:
            reason = (
                "classifier head, not used"
                if new_key.startswith("head")
                else "no such tensor in the encoder"
            )
            report.skipped[old_key] = reason
            continue
        if value.shape != encoder_sd[new_key].shape:
            report.skipped[old_key] = "shape does not match the encoder"
            continue
        if value.shape != source[old_key].shape:
            report.resized.append(f"encoder.{new_key}")
        new_sd[f"encoder.{new_key}"] = value
        report.loaded_encoder.append(f"encoder.{new_key}")

        # Mirror encoder stage i's blocks onto decoder level i (official Swin-UNet load_from).
        match = _BLOCK_KEY.match(new_key)
        if match is None:
            continue
        level, block, rest = int(match[1]), int(match[2]), match[3]
        target = f"decoder.{level}.blocks.{block}.{rest}"
        if target in model_sd and model_sd[target].shape == value.shape:
            if value.shape != source[old_key].shape:
                report.resized.append(target)
            new_sd[target] = value
            report.loaded_decoder.append(target)

    if not report.loaded_encoder:
        raise ValueError(f"no tensor of {path!r} fits the Swin-UNet encoder; expected {_EXPECTED}")
    result = model.load_state_dict(new_sd, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # every key came from model_sd
    report.not_initialised = list(result.missing_keys)
    if verbose:
        print(report.summary())
    return report
