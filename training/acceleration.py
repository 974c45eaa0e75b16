"""torch.compile for the training scripts (--compile), with a fallback to eager mode.

Compiling changes only how a network's forward and backward run: its parameters stay the
bare module's, so checkpoints (written from the bare networks, `models.ema.unwrap_model`)
carry no `_orig_mod.` prefix and load into an uncompiled network.
"""

from __future__ import annotations

import torch
from torch import nn

from training.precision import MIXED_PRECISION_CHOICES

COMPILE_CHOICES = ("auto", "on", "off")


def compile_enabled(setting: str, device: torch.device) -> bool:
    """Whether --compile SETTING compiles on DEVICE.

    auto: on CUDA only. On a CPU the compile (about 30 s per graph for g_phi's ResNet18,
    recompiled for evaluation batches) does not pay: g_phi's bf16 training step ran 0.95x
    and U-Net++'s 0.93x the eager speed compiled (benchmarks/training_speed.py, README).
    """
    if setting not in COMPILE_CHOICES:
        raise ValueError(f"--compile must be one of {COMPILE_CHOICES}, got {setting!r}")
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def maybe_compile(module: nn.Module, setting: str, device: torch.device, what: str) -> nn.Module:
    """`module` compiled when `compile_enabled`, else `module` itself.

    A graph Dynamo or Inductor cannot compile runs eagerly (`suppress_errors`) instead of
    ending the run; a platform without torch.compile gets the module back, with a notice.
    """
    if not compile_enabled(setting, device):
        return module
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    try:
        compiled = torch.compile(module)
    except Exception as err:  # e.g. a Python version torch.compile does not support yet
        print(f"notice: torch.compile is unavailable for {what} ({err}); it runs eagerly")
        return module
    print(f"{what}: torch.compile on (the first steps include the compilation)", flush=True)
    return compiled


def add_speed_arguments(group) -> None:
    """--mixed_precision and --compile, shared by every training script."""
    group.add_argument(
        "--mixed_precision",
        choices=MIXED_PRECISION_CHOICES,
        default="auto",
        help="autocast dtype. auto: fp16 on CUDA, bf16 on a CPU with native bf16, else none; "
        "fp16 on a CPU runs in full precision (training/precision.py)",
    )
    group.add_argument(
        "--compile",
        choices=COMPILE_CHOICES,
        default="auto",
        help="torch.compile the networks (auto: on CUDA only; a graph that fails to compile "
        "runs eagerly)",
    )
