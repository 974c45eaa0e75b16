"""Image augmentation on uint8 numpy arrays (docs/METHOD.md §3.3 for Phase 1, §4.5 for Phase 2).

- Joint spatial augmentation of an image and its mask: flips and a rotation of up to
  +-20 degrees, applied identically to both (Phase 1 before corruption; Phase 2 labeled).
- Photometric augmentation of the image only: brightness/contrast (p 0.5), colour jitter
  0.1/0.1/0.1/0.05 (p 0.3) and Gaussian noise (p 0.2) of variance 5-25 grey levels squared
  (std sqrt(5) to 5), stated in pixel units so that the applied noise is the intended one
  (docs/METHOD.md §9).
- Strong views of unlabeled images (FixMatch, UniMatch): stronger colour jitter, greyscale,
  Gaussian blur, and CutMix boxes (docs/METHOD.md §7.6).
- ImageNet normalisation to a float CHW tensor.

Everything works on uint8 with OpenCV lookup tables and SIMD primitives, so that a data
loader worker produces well over a thousand samples per second per core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from data.io import IMAGENET_MEAN, IMAGENET_STD

# --------------------------------------------------------------------------------------
# Joint spatial augmentation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpatialParams:
    """One draw of the joint spatial augmentation (so it can be replayed on other arrays)."""

    hflip: bool = False
    vflip: bool = False
    angle: float = 0.0  # degrees, counter-clockwise; 0 = no rotation


def sample_spatial(
    rng: np.random.Generator,
    p_hflip: float = 0.5,
    p_vflip: float = 0.5,
    max_degrees: float = 20.0,
    p_rotate: float = 0.5,
) -> SpatialParams:
    """Draw flips and a rotation angle in [-max_degrees, max_degrees]."""
    hflip = bool(rng.random() < p_hflip)
    vflip = bool(rng.random() < p_vflip)
    angle = 0.0
    if max_degrees > 0 and rng.random() < p_rotate:
        angle = float(rng.uniform(-max_degrees, max_degrees))
    return SpatialParams(hflip, vflip, angle)


def apply_spatial(arr: np.ndarray, params: SpatialParams, is_mask: bool) -> np.ndarray:
    """Apply flips then rotation about the centre to an image (H, W, C) or mask (H, W).

    Masks are resampled with nearest neighbour so they stay binary; both use reflected
    borders, so no artificial black corners appear for g_phi to key on.
    """
    if params.hflip and params.vflip:
        arr = cv2.flip(arr, -1)
    elif params.hflip:
        arr = cv2.flip(arr, 1)
    elif params.vflip:
        arr = cv2.flip(arr, 0)
    if params.angle:
        h, w = arr.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2.0 - 0.5, h / 2.0 - 0.5), params.angle, 1.0)
        arr = cv2.warpAffine(
            arr,
            matrix,
            (w, h),
            flags=cv2.INTER_NEAREST if is_mask else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
    return np.ascontiguousarray(arr)


def flip_rotate_pair(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    max_degrees: float = 20.0,
    p_rotate: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, SpatialParams]:
    """Joint flips + rotation of an image and its mask; returns the params used too."""
    params = sample_spatial(rng, max_degrees=max_degrees, p_rotate=p_rotate)
    return apply_spatial(image, params, False), apply_spatial(mask, params, True), params


def random_flips(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal and vertical flips only (the unlabeled weak view of Phase 2)."""
    return apply_spatial(image, sample_spatial(rng, max_degrees=0.0), False)


# --------------------------------------------------------------------------------------
# Photometric augmentation (image only)
# --------------------------------------------------------------------------------------

_RAMP = np.arange(256, dtype=np.float32)


def _lut(image: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """Per-pixel affine map v -> gain * v + offset, clipped to uint8, via a lookup table."""
    table = np.clip(_RAMP * gain + offset, 0, 255).round().astype(np.uint8)
    return cv2.LUT(image, table)


def _grey_mean(image: np.ndarray) -> float:
    # ITU-R 601 luma weights, as in torchvision's ColorJitter.
    means = image.reshape(-1, 3).mean(axis=0) if image.size < 4096 else cv2.mean(image)[:3]
    return 0.299 * means[0] + 0.587 * means[1] + 0.114 * means[2]


def brightness_contrast(
    image: np.ndarray, rng: np.random.Generator, brightness: float = 0.2, contrast: float = 0.2
) -> np.ndarray:
    """v -> v * (1 + c) + 255 * b with b, c uniform in +-limit (albumentations' default)."""
    b = rng.uniform(-brightness, brightness)
    c = rng.uniform(-contrast, contrast)
    return _lut(image, 1.0 + c, 255.0 * b)


def color_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.1,
    contrast: float = 0.1,
    saturation: float = 0.1,
    hue: float = 0.05,
) -> np.ndarray:
    """Colour jitter as torchvision defines it (brightness, contrast, saturation, hue)."""
    fb = rng.uniform(1 - brightness, 1 + brightness)
    fc = rng.uniform(1 - contrast, 1 + contrast)
    fs = rng.uniform(1 - saturation, 1 + saturation)
    fh = rng.uniform(-hue, hue)
    # Brightness then contrast compose into one affine lookup table.
    mean = _grey_mean(image) * fb
    image = _lut(image, fb * fc, (1 - fc) * mean)
    if fs != 1.0:
        grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        image = cv2.addWeighted(image, fs, grey, 1 - fs, 0.0)
    if fh != 0.0:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
        hsv[..., 0] += np.uint8(round(fh * 256) % 256)  # wraps mod 256
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    return image


_NOISE_BANK_SIZE = 1 << 22
_noise_bank: np.ndarray | None = None


def _standard_normal_window(n: int, rng: np.random.Generator) -> np.ndarray:
    """n standard-normal values: a window at a random offset into a fixed bank of 4M.

    Drawing 150k normals per image costs about 1 ms; reading a window of a bank drawn
    once per process costs nothing, and windows at random offsets of a 4M bank are, for
    augmentation, as good as fresh draws (each pixel still gets N(0, 1) noise).
    """
    global _noise_bank
    if _noise_bank is None:
        _noise_bank = np.random.default_rng(0x5EED).standard_normal(
            _NOISE_BANK_SIZE, dtype=np.float32
        )
    if n > _NOISE_BANK_SIZE:
        return rng.standard_normal(n, dtype=np.float32)
    start = int(rng.integers(0, _NOISE_BANK_SIZE - n + 1))
    return _noise_bank[start : start + n]


def gaussian_noise(
    image: np.ndarray,
    rng: np.random.Generator,
    var_range: tuple[float, float] = (5.0, 25.0),
) -> np.ndarray:
    """Additive Gaussian noise, variance drawn uniformly in grey levels squared
    (docs/METHOD.md §3.3: variance 5-25, i.e. a standard deviation of 2.2-5 grey levels, as
    albumentations' `var_limit` means it)."""
    std = np.float32(math.sqrt(rng.uniform(*var_range)))
    noise = _standard_normal_window(image.size, rng).reshape(image.shape)
    noisy = image.astype(np.float32)
    noisy += noise * std
    return np.clip(noisy, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class PhotometricAugment:
    """The image-only augmentation of Phase 1 (docs/METHOD.md §3.3)."""

    p_brightness_contrast: float = 0.5
    brightness_limit: float = 0.2
    contrast_limit: float = 0.2
    p_color_jitter: float = 0.3
    jitter: tuple[float, float, float, float] = (0.1, 0.1, 0.1, 0.05)
    p_noise: float = 0.2
    noise_var_range: tuple[float, float] = (5.0, 25.0)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.p_brightness_contrast:
            image = brightness_contrast(image, rng, self.brightness_limit, self.contrast_limit)
        if rng.random() < self.p_color_jitter:
            image = color_jitter(image, rng, *self.jitter)
        if rng.random() < self.p_noise:
            image = gaussian_noise(image, rng, self.noise_var_range)
        return image


def gaussian_blur(
    image: np.ndarray, rng: np.random.Generator, sigma_range: tuple[float, float] = (0.1, 2.0)
) -> np.ndarray:
    """Gaussian blur with sigma uniform in `sigma_range` (the kernel spans +-3 sigma)."""
    sigma = float(rng.uniform(*sigma_range))
    k = 2 * max(1, math.ceil(3 * sigma)) + 1
    return cv2.GaussianBlur(image, (k, k), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)


@dataclass(frozen=True)
class StrongAugment:
    """The photometric part of a strong view (FixMatch / UniMatch, docs/METHOD.md §7.6):
    colour jitter 0.5/0.5/0.5/0.25 (p 0.8), greyscale (p 0.2), Gaussian blur with sigma in
    [0.1, 2] (p 0.5), in UniMatch's order; the geometry is the weak view's."""

    p_color_jitter: float = 0.8
    jitter: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 0.25)
    p_grey: float = 0.2
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.p_color_jitter:
            image = color_jitter(image, rng, *self.jitter)
        if rng.random() < self.p_grey:
            image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        if rng.random() < self.p_blur:
            image = gaussian_blur(image, rng, self.blur_sigma)
        return np.ascontiguousarray(image)


@dataclass(frozen=True)
class CutMixBox:
    """A CutMix box as UniMatch draws it (`obtain_cutmix_box`): with probability `p`, a
    rectangle of area fraction uniform in `area`; then aspect ratio (height / width)
    uniform in `aspect` and top-left corner uniform over the image, both drawn again until
    the box fits inside; else no box."""

    p: float = 0.5
    area: tuple[float, float] = (0.02, 0.4)
    aspect: tuple[float, float] = (0.3, 1 / 0.3)

    def __call__(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """(H, W) uint8 mask, 1 inside the box (where another image is pasted)."""
        box = np.zeros((height, width), np.uint8)
        if rng.random() >= self.p:
            return box
        area = rng.uniform(*self.area) * height * width
        while True:
            ratio = rng.uniform(*self.aspect)
            w, h = int(math.sqrt(area / ratio)), int(math.sqrt(area * ratio))
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            if x + w <= width and y + h <= height:
                break
        box[y : y + h, x : x + w] = 1
        return box


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------

# (256, 3) table: value v of channel c -> (v / 255 - mean[c]) / std[c].
_NORMALISE_TABLE = (
    (_RAMP[:, None] / 255.0 - np.asarray(IMAGENET_MEAN, np.float32))
    / np.asarray(IMAGENET_STD, np.float32)
).astype(np.float32)


def normalize_image(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> ImageNet-normalised float32 (3, H, W)."""
    out = np.empty((3, *image.shape[:2]), dtype=np.float32)
    for c in range(3):
        np.take(_NORMALISE_TABLE[:, c], image[..., c], out=out[c])
    return out


def normalize_tensor(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) tensor on any device -> ImageNet-normalised float (B, 3, H, W)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * 255.0
    return (images.float() - mean) / std
