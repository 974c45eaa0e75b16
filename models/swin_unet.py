"""Swin-UNet (Cao et al. 2021, "Swin-Unet: Unet-like Pure Transformer for Medical Image
Segmentation"), one of the paper's three f_theta (docs/METHOD.md §4).

Encoder: timm's Swin-T (patch 4, embed 96, depths 2,2,6,2, heads 3,6,12,24, window 7).
Decoder: symmetric; per resolution level i (deep to shallow) concat the encoder skip and a
Linear(2C, C) back to the level's width (not at the bottleneck), ``decoder_depths[i]`` timm
Swin blocks, then a patch-expanding layer (Linear C -> 2C, 2x2 pixel shuffle, LayerNorm C/2)
to the next level; a final 4x patch expansion to full resolution and a 1x1 conv head.

Choices where the paper leaves room (reference choices, docs/METHOD.md §4 and §9):

- Skips (``skip_source``): "blocks" (default) takes the output of each encoder stage's blocks,
  as drawn in the paper's Fig. 1; "official" takes each stage's input, as the official code
  does, so its 1/4-resolution skip is the raw patch embedding.
- ``decoder_depths`` has one entry per level, ordered like the encoder's ``depths`` (level 0 =
  1/4 resolution, 96 channels; level 3 = the 1/32 bottleneck). The default (2, 2, 2, 2) reads
  the paper's "decoder depths 2,2,2,2" literally: two blocks at every level, the 1/32 one
  included (14M parameters there, little compute on a 7 x 7 map). ``(2, 2, 2, 0)``
  (``--swin_decoder_depths 2 2 2 0``) gives the official code's structure, whose bottleneck
  level is only a patch expansion.
- Window size at sizes other than 224 (Swin's shifted-window mask assumes windows tile the
  feature map): each stage uses the whole feature map as one window when it is at most
  ``window_size + 1`` tokens wide (what Swin itself does when the map is no larger than the
  window: global attention, no shift); otherwise the divisor of the stage resolution closest to
  ``window_size`` in [window_size // 2 + 1, window_size + 1] (ties to the smaller). At 224 this
  is 7 everywhere; at 64 px (16, 8, 4, 2 tokens) 8, 8, 4, 2; at 128 px 8, 8, 8, 4. Exact
  tiling rather than timm's padding, because timm rolls before padding, so at shifted blocks
  wrapped-around tokens would share a window with unmasked, non-adjacent ones. Sizes with no
  such window at some stage (not a multiple of 32, or e.g. 352, whose 1/32 map is 11 wide)
  raise an error that lists the valid sizes. Pretrained relative position bias tables (13x13
  for window 7) are resized to the chosen window on loading
  (:func:`models.swin_unet_utils.load_swin_pretrained`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import calculate_drop_path_rates, trunc_normal_
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn

from models.common import SegmentationNetwork, check_input_shape

PATCH_SIZE = 4
NUM_STAGES = 4
DOWNSAMPLING = PATCH_SIZE * 2 ** (NUM_STAGES - 1)  # 32
SKIP_SOURCES = ("blocks", "official")


def choose_window(resolution: int, window_size: int = 7) -> int | None:
    """Window for a stage ``resolution`` tokens wide that tiles it exactly (see module doc).

    Returns None when no window in [window_size // 2 + 1, window_size + 1] divides it.
    """
    if resolution <= window_size + 1:
        return resolution
    candidates = [d for d in range(window_size // 2 + 1, window_size + 2) if resolution % d == 0]
    if not candidates:
        return None
    return min(candidates, key=lambda d: (abs(d - window_size), d))


def stage_window_sizes(image_size: int, window_size: int = 7) -> tuple[int, ...]:
    """Per-stage window sizes for a square ``image_size``; ValueError where none works."""
    if image_size < DOWNSAMPLING or image_size % DOWNSAMPLING:
        raise ValueError(
            f"swinunet needs image_size to be a multiple of {DOWNSAMPLING} (patch size "
            f"{PATCH_SIZE} and three 2x patch mergings); got {image_size}. Valid sizes: "
            f"{valid_image_sizes(window_size=window_size)}"
        )
    windows = []
    for stage in range(NUM_STAGES):
        resolution = image_size // (PATCH_SIZE * 2**stage)
        window = choose_window(resolution, window_size)
        if window is None:
            raise ValueError(
                f"swinunet at image_size {image_size}: stage {stage} is {resolution} tokens "
                f"wide and no window in [{window_size // 2 + 1}, {window_size + 1}] tiles it. "
                f"Valid sizes: {valid_image_sizes(window_size=window_size)}"
            )
        windows.append(window)
    return tuple(windows)


def valid_image_sizes(max_size: int = 512, window_size: int = 7) -> list[int]:
    """Square image sizes up to ``max_size`` that Swin-UNet can be built for."""
    sizes = []
    for size in range(DOWNSAMPLING, max_size + 1, DOWNSAMPLING):
        resolutions = [size // (PATCH_SIZE * 2**s) for s in range(NUM_STAGES)]
        if all(choose_window(r, window_size) is not None for r in resolutions):
            sizes.append(size)
    return sizes


class PatchExpand(nn.Module):
    """Swin-UNet's patch expanding layer on NHWC tokens.

    Linear(C -> scale^2 * C_out), rearrange each token's channels into a scale x scale block of
    C_out-channel tokens, LayerNorm(C_out). Scale 2 with C_out = C/2 between decoder levels;
    scale 4 with C_out = C for the final expansion to full resolution.
    """

    def __init__(self, dim: int, out_dim: int, scale: int) -> None:
        super().__init__()
        self.scale, self.out_dim = scale, out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        s = self.scale
        x = self.expand(x).view(b, h, w, s, s, self.out_dim)
        # channel layout (row offset, column offset, C_out), as the official rearrange
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, self.out_dim)
        return self.norm(x)


class SwinUNetDecoderLevel(nn.Module):
    """One decoder level: [concat skip + Linear(2C, C)] -> Swin blocks -> [PatchExpand x2]."""

    def __init__(
        self,
        dim: int,
        resolution: int,
        depth: int,
        num_heads: int,
        window: int,
        drop_path: Sequence[float],
        has_skip: bool,
        expand: bool,
    ) -> None:
        super().__init__()
        self.concat_proj = nn.Linear(2 * dim, dim) if has_skip else None
        # Same block pattern as the encoder stage at this level (even: W-MSA, odd: SW-MSA),
        # so the mirrored pretrained weights land on blocks of the same kind.
        self.blocks = nn.Sequential(
            *[
                SwinTransformerBlock(
                    dim=dim,
                    input_resolution=(resolution, resolution),
                    num_heads=num_heads,
                    window_size=window,
                    shift_size=0 if j % 2 == 0 else window // 2,
                    drop_path=drop_path[j],
                )
                for j in range(depth)
            ]
        )
        self.upsample = PatchExpand(dim, dim // 2, scale=2) if expand else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        if self.concat_proj is not None:
            x = self.concat_proj(torch.cat([x, skip], dim=-1))
        x = self.blocks(x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class SwinUNet(SegmentationNetwork):
    """Swin-UNet for one-channel segmentation at a fixed square ``image_size``.

    Args:
        image_size: H = W of the inputs; see :func:`valid_image_sizes`.
        window_size: the target window (7 for Swin-T); stages adapt it (module doc).
        depths, num_heads, embed_dim: the encoder (Swin-T by default).
        decoder_depths: blocks per decoder level, level 0 (1/4) first (module doc).
        skip_source: "blocks" (paper's Fig. 1) or "official" (stage inputs, official code).
        drop_path_rate: stochastic depth, linearly rising over the blocks (0.1 as Swin-UNet).
    """

    feature_layout = "NHWC"  # encode() returns Swin tokens

    def __init__(
        self,
        image_size: int = 224,
        window_size: int = 7,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        decoder_depths: Sequence[int] = (2, 2, 2, 2),
        drop_path_rate: float = 0.1,
        skip_source: str = "blocks",
    ) -> None:
        super().__init__()
        if skip_source not in SKIP_SOURCES:
            raise ValueError(f"skip_source must be one of {SKIP_SOURCES}; got {skip_source!r}")
        self.skip_source = skip_source
        if (
            len(depths) != NUM_STAGES
            or len(num_heads) != NUM_STAGES
            or len(decoder_depths) != NUM_STAGES
        ):
            raise ValueError(
                f"depths, num_heads and decoder_depths need {NUM_STAGES} entries; "
                f"got {depths}, {num_heads}, {decoder_depths}"
            )
        self.image_size = int(image_size)
        self.windows = stage_window_sizes(self.image_size, window_size)
        self.valid_sizes = valid_image_sizes(max(512, self.image_size), window_size)
        self.decoder_depths = tuple(int(d) for d in decoder_depths)
        dims = [embed_dim * 2**i for i in range(NUM_STAGES)]
        grid = self.image_size // PATCH_SIZE
        resolutions = [grid // 2**i for i in range(NUM_STAGES)]

        # timm's Swin Transformer as the encoder: its state dict uses the Swin names, so the
        # official checkpoint maps on with timm's checkpoint_filter_fn; per-stage windows.
        self.encoder = SwinTransformer(
            img_size=self.image_size,
            patch_size=PATCH_SIZE,
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_size=self.windows,
            num_classes=0,
            drop_path_rate=drop_path_rate,
        )

        dpr = calculate_drop_path_rates(
            drop_path_rate, list(self.decoder_depths), stagewise=True
        )  # per-level lists
        self.decoder = nn.ModuleList(
            SwinUNetDecoderLevel(
                dim=dims[i],
                resolution=resolutions[i],
                depth=self.decoder_depths[i],
                num_heads=num_heads[i],
                window=self.windows[i],
                drop_path=dpr[i],
                has_skip=i < NUM_STAGES - 1,
                expand=i > 0,
            )
            for i in range(NUM_STAGES)
        )
        self.decoder_norm = nn.LayerNorm(embed_dim)
        self.final_expand = PatchExpand(embed_dim, embed_dim, scale=PATCH_SIZE)
        self.segmentation_head = nn.Conv2d(embed_dim, 1, kernel_size=1)
        self.decoder_feature_channels = embed_dim
        self.deepest_channels = embed_dim * 2 ** (NUM_STAGES - 1)
        for module in (self.decoder, self.decoder_norm, self.final_expand):
            module.apply(_init_swin_weights)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The skip tokens of stages 0-2 and the normed bottleneck tokens (NHWC)."""
        check_input_shape(
            x, "swinunet", DOWNSAMPLING, size=self.image_size, valid_sizes=self.valid_sizes
        )
        tokens = self.encoder.patch_embed(x)  # NHWC
        skips = []
        for stage in self.encoder.layers:
            # timm stages merge patches first (Identity at stage 0), then run their blocks
            tokens = stage.downsample(tokens)
            if self.skip_source == "official":
                skips.append(tokens)
            tokens = stage.blocks(tokens)
            if self.skip_source == "blocks":
                skips.append(tokens)
        return [*skips[: NUM_STAGES - 1], self.encoder.norm(tokens)]

    def decode(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits (B, 1, H, W), full-resolution decoder features (B, 96, H, W))."""
        skips, y = features[:-1], features[-1]
        for i in reversed(range(NUM_STAGES)):
            y = self.decoder[i](y, skips[i] if i < NUM_STAGES - 1 else None)
        y = self.final_expand(self.decoder_norm(y))
        features = y.permute(0, 3, 1, 2).contiguous()
        return self.segmentation_head(features), features


def _init_swin_weights(module: nn.Module) -> None:
    # Swin / Swin-UNet init: truncated normal (std 0.02) linears, zero bias, unit LayerNorm.
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
