"""Resizing to a square: the one rule of the loaders and of every preparer (docs/METHOD.md §8.3).

Images are area-averaged when shrinking and bilinear otherwise (or bilinear on request);
masks are resized by nearest neighbour. `keep_aspect` fits the picture inside the square
and pads it with zeros (black image, background mask) instead of stretching it.
`reduction_factor` is the size arithmetic of libjpeg's reduced-scale decode, which
`data.io.read_for_resize` uses to decode large JPEGs at the smallest scale a resize allows.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

# The paper's input side: what the preparers write unless told otherwise.
DEFAULT_IMAGE_SIZE = 224
INTERPOLATIONS = ("area", "bilinear")


def content_size(height: int, width: int, size: int, keep_aspect: bool) -> tuple[int, int]:
    """(h, w) the picture takes in a `size` square: all of it, or the aspect-kept fit."""
    if not keep_aspect:
        return size, size
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _pad_to_square(array: np.ndarray, size: int) -> np.ndarray:
    """Centre `array` on a zero `size` square (zero: black image, background mask)."""
    h, w = array.shape[:2]
    out = np.zeros((size, size, *array.shape[2:]), dtype=array.dtype)
    top, left = (size - h) // 2, (size - w) // 2
    out[top : top + h, left : left + w] = array
    return out


def _to_square(
    array: np.ndarray, size: int, keep_aspect: bool, flag: Callable[[bool], int]
) -> np.ndarray:
    """Resize `array` into a `size` square with the OpenCV flag `flag(shrinking)`."""
    h, w = array.shape[:2]
    out_h, out_w = content_size(h, w, size, keep_aspect)
    if (out_h, out_w) != (h, w):
        array = cv2.resize(array, (out_w, out_h), interpolation=flag(out_h < h and out_w < w))
    return _pad_to_square(array, size) if keep_aspect else array


def resize_image(
    image: np.ndarray, size: int, keep_aspect: bool = False, interpolation: str = "area"
) -> np.ndarray:
    """Resize an image into a `size` square (area averaging when shrinking, else bilinear)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")

    def flag(shrinking: bool) -> int:
        # Area averaging is alias-free when shrinking and degenerates to nearest when enlarging.
        return cv2.INTER_AREA if interpolation == "area" and shrinking else cv2.INTER_LINEAR

    return _to_square(image, size, keep_aspect, flag)


def resize_nearest(mask: np.ndarray, size: int, keep_aspect: bool = False) -> np.ndarray:
    """Resize a mask (or any label map) by nearest neighbour into a `size` square, values kept."""
    return _to_square(mask, size, keep_aspect, lambda _: cv2.INTER_NEAREST)


def resize_mask(mask: np.ndarray, size: int, keep_aspect: bool = False) -> np.ndarray:
    """Resize a {0, 1} mask by nearest neighbour into a `size` square; return it as 0/255.

    Nearest neighbour picks source pixels, so binarising before or after it gives the same
    mask; binarising first (in `data.io.read_mask`) lets every encoding share one rule.
    """
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    return resize_nearest(binary, size, keep_aspect) * np.uint8(255)


def reduction_factor(width: int, height: int, size: int, keep_aspect: bool = False) -> int:
    """The largest JPEG decode reduction (8, 4, 2 or 1) leaving at least the resize's size.

    libjpeg's scaled decode gives ceil(side / factor) pixels.
    """
    need_h, need_w = content_size(height, width, size, keep_aspect)
    for factor in (8, 4, 2):
        if -(-width // factor) >= need_w and -(-height // factor) >= need_h:
            return factor
    return 1
