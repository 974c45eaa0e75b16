"""VerSemi's task-prompted network in 2D (Zeng et al., IEEE TMI 2025; docs/METHOD.md §11):
any of the project's encoder-decoders with a DoDNet-style dynamic head conditioned on a
one-hot task code, one sigmoid output channel so that g_phi can score any prompted
prediction.

The head: the deepest encoder feature -> GroupNorm, ReLU, global average pool ->
concatenated with the one-hot code of K + 1 tasks (K data sets + the synthetic "any
foreground" task) -> a 1x1 controller that outputs, per sample, the parameters of three
1x1 convolutions (8 -> 8, ReLU, 8 -> 8, ReLU, 8 -> 1), applied to the decoder's last
feature map after a shared 1x1 reduction to 8 channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.common import SegmentationNetwork

HEAD_CHANNELS = 8  # VerSemi's (and DoDNet's) dynamic-head width


def dynamic_head_shapes(channels: int = HEAD_CHANNELS) -> list[tuple[int, int]]:
    """(out, in) of the three dynamic 1x1 convolutions."""
    return [(channels, channels), (channels, channels), (1, channels)]


def num_dynamic_parameters(channels: int = HEAD_CHANNELS) -> int:
    """Weights and biases the controller outputs per sample (153 for 8 channels)."""
    return sum(o * i + o for o, i in dynamic_head_shapes(channels))


class DynamicHead(nn.Module):
    """The controller and the per-sample head it parameterises."""

    def __init__(
        self,
        deep_channels: int,
        feature_channels: int,
        num_tasks: int,
        channels: int = HEAD_CHANNELS,
    ) -> None:
        super().__init__()
        if num_tasks < 2:
            raise ValueError(
                f"num_tasks counts the data sets and the synthetic task: >= 2, got {num_tasks}"
            )
        self.num_tasks, self.channels = int(num_tasks), int(channels)
        self.norm = nn.GroupNorm(math.gcd(16, deep_channels), deep_channels)
        self.reduce = nn.Conv2d(feature_channels, channels, kernel_size=1)
        self.controller = nn.Conv2d(deep_channels + num_tasks, num_dynamic_parameters(channels), 1)

    def forward(
        self, deep: torch.Tensor, features: torch.Tensor, task: torch.Tensor
    ) -> torch.Tensor:
        """Logits (B, 1, H, W) for the feature map (B, C, H, W) under prompts `task` (B,),
        or (P, B, 1, H, W) under P prompts per image, `task` (P, B): the pooled feature and
        the reduced map are computed once, only the per-sample head runs P times."""
        rows = task if task.dim() == 2 else task[None]
        if rows.dim() != 2 or rows.shape[1] != len(features):
            raise ValueError(
                f"task must hold one index per sample, ({len(features)},) or (P, "
                f"{len(features)}), got {tuple(task.shape)}"
            )
        if int(rows.min()) < 0 or int(rows.max()) >= self.num_tasks:
            raise ValueError(f"task indices must lie in [0, {self.num_tasks}), got {task.tolist()}")
        pooled = F.adaptive_avg_pool2d(F.relu(self.norm(deep)), 1)
        reduced = self.reduce(features)
        out = torch.stack([self.run_head(pooled, reduced, t) for t in rows])
        return out if task.dim() == 2 else out[0]

    def run_head(self, pooled: torch.Tensor, h: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The controller's per-sample parameters for `task` (B,), applied to `h`."""
        code = F.one_hot(task.long(), self.num_tasks).to(pooled.dtype)[:, :, None, None]
        params = self.controller(torch.cat([pooled, code], dim=1)).flatten(1)
        offset = 0
        shapes = dynamic_head_shapes(self.channels)
        for k, (out_c, in_c) in enumerate(shapes):
            w = params[:, offset : offset + out_c * in_c].view(-1, out_c, in_c)
            offset += out_c * in_c
            b = params[:, offset : offset + out_c]
            offset += out_c
            h = torch.einsum("boc,bchw->bohw", w, h) + b[:, :, None, None]
            if k < len(shapes) - 1:
                h = F.relu(h)
        return h


class PromptedSegNet(nn.Module):
    """A project network (`SegmentationNetwork`) whose output is chosen by a task prompt:
    `forward(x, task)` -> logits (B, 1, H, W) of the target of task[b] in image b, or
    (P, B, 1, H, W) for a (P, B) `task`: P prompts on one encoder-decoder forward."""

    def __init__(
        self, base: SegmentationNetwork, num_tasks: int, channels: int = HEAD_CHANNELS
    ) -> None:
        super().__init__()
        self.base = base
        self.head = DynamicHead(
            base.deepest_channels, base.decoder_feature_channels, num_tasks, channels
        )
        self.num_tasks = num_tasks

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        encoded = self.base.encode(x)
        _, features = self.base.decode(encoded)
        return self.head(self.base.deepest_feature(encoded), features, task)


class FixedPrompt(nn.Module):
    """`net` under one task prompt: `forward(x)` = net(x, task) for every image, so that
    the shared evaluation (training.eval_utils) tests each task with its own prompt."""

    def __init__(self, net: nn.Module, task: int) -> None:
        super().__init__()
        self.net, self.task = net, int(task)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, torch.full((len(x),), self.task, device=x.device, dtype=torch.long))
