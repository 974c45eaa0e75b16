"""Mask corruption operations for Variable Quality Masks (docs/METHOD.md §2.2-§2.4).

Every operation is a pure function ``op(mask, rng, **params) -> mask`` over a binary
{0, 1} uint8 mask of any size; it returns a new array of the same shape and never raises
on an empty, full, tiny or multi-component mask (an op that cannot act returns a defined
result, documented on the op).

The pools are data: each `CorruptionOp` holds the name, function, parameters (in pixels at
224 x 224, the paper's size) and sampling weight, so the tables below read like
docs/METHOD.md §2.2-§2.4. Pixel parameters are scaled to the mask's size
(``scale = sqrt(H * W) / 224``, docs/METHOD.md §2.6) unless scaling is switched off, so
that a 128 px mask is corrupted like a 224 px one:

- kernel sizes scale their radius ``(k - 1) / 2`` (rounded, at least 1);
- lengths and radius ranges scale linearly (rounded, at least 1 pixel);
- the elastic field amplitude ``alpha`` scales with ``scale**2``: after smoothing white
  noise with a Gaussian of width sigma the displacement is about ``alpha / (2 sqrt(pi)
  sigma)``, so scaling sigma by s and alpha by s**2 scales the displacement by s.

The operations are written for speed (OpenCV on uint8, separable remaps, no full-image
Python loops): the VQM benchmark (`benchmarks/vqm_throughput.py`) measures them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

REFERENCE_SIZE = 224

Mask = np.ndarray
OpFn = Callable[..., Mask]


# --------------------------------------------------------------------------------------
# Small shared helpers
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _square_kernel(size: int) -> np.ndarray:
    return np.ones((size, size), np.uint8)


@lru_cache(maxsize=16)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 pixel coordinate grids (x, y) for cv2.remap, cached per shape."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def _largest_contour(mask: Mask) -> np.ndarray | None:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    return max(contours, key=cv2.contourArea)


def _moments(mask: Mask) -> dict[str, float]:
    # Grey-level moments equal binary ones on a {0, 1} mask and are twice as fast.
    return cv2.moments(mask)


def _random_bits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Fair random {0, 1} uint8 array (8 bits per random byte: 10x cheaper than floats)."""
    n = math.prod(shape)
    bits = np.unpackbits(np.frombuffer(rng.bytes((n + 7) // 8), np.uint8), count=n)
    return bits.reshape(shape)


def _component_count_at_most_one(mask: Mask) -> bool:
    """True when the mask has 0 or 1 8-connected components.

    Each component has one outer contour; with RETR_CCOMP those are exactly the top-level
    contours, including an island inside another component's hole (which RETR_EXTERNAL
    would miss, turning `largest_only` and `drop_component` into no-ops on such masks).
    """
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) <= 1:
        return True
    return int(np.count_nonzero(hierarchy[0, :, 3] < 0)) <= 1


def _centroid(mask: Mask) -> tuple[float, float, float] | None:
    """(area, cx, cy) from image moments, or None for an empty mask."""
    m = _moments(mask)
    if m["m00"] <= 0:
        return None
    return m["m00"], m["m10"] / m["m00"], m["m01"] / m["m00"]


def _warp(mask: Mask, matrix: np.ndarray) -> Mask:
    h, w = mask.shape
    return cv2.warpAffine(
        mask, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT
    )


def _translate(mask: Mask, dx: int, dy: int) -> Mask:
    """Integer translation with zero fill (pure slicing, exact)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), w - max(0, dx))
    dst_x = slice(max(0, dx), w - max(0, -dx))
    out[dst_y, dst_x] = mask[src_y, src_x]
    return out


# --------------------------------------------------------------------------------------
# Morphology
# --------------------------------------------------------------------------------------


def erosion(mask: Mask, rng: np.random.Generator, kernel_size: int) -> Mask:
    """Erode with a square kernel (under-segmentation)."""
    return cv2.erode(mask, _square_kernel(kernel_size))


def dilation(mask: Mask, rng: np.random.Generator, kernel_size: int) -> Mask:
    """Dilate with a square kernel (over-segmentation)."""
    return cv2.dilate(mask, _square_kernel(kernel_size))


def opening(mask: Mask, rng: np.random.Generator, kernel_size: int) -> Mask:
    """Morphological opening: removes thin protrusions and small components."""
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, _square_kernel(kernel_size))


def closing(mask: Mask, rng: np.random.Generator, kernel_size: int) -> Mask:
    """Morphological closing: fills narrow gaps and small holes."""
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _square_kernel(kernel_size))


# --------------------------------------------------------------------------------------
# Shape approximations
# --------------------------------------------------------------------------------------


def ellipse(mask: Mask, rng: np.random.Generator) -> Mask:
    """Ellipse fitted to the largest contour.

    As in the release, a contour of fewer than 5 points (empty or tiny mask, or a mask
    whose outline is a bare rectangle, such as a full mask) gives an empty mask.
    """
    out = np.zeros_like(mask)
    contour = _largest_contour(mask)
    if contour is None or len(contour) < 5:
        return out
    try:
        (cx, cy), (ax1, ax2), angle = cv2.fitEllipse(contour)
        if not all(math.isfinite(v) for v in (cx, cy, ax1, ax2, angle)):
            return out
        cv2.ellipse(out, ((cx, cy), (ax1, ax2), angle), 1, -1)
    except cv2.error:
        pass
    return out


def polygon(mask: Mask, rng: np.random.Generator, n_vertices: int) -> Mask:
    """Polygon of about `n_vertices` vertices approximating the largest contour.

    The Douglas-Peucker tolerance is found by bisection on the contour's perimeter.
    """
    out = np.zeros_like(mask)
    contour = _largest_contour(mask)
    if contour is None:
        return out
    lo, hi = 0.0, cv2.arcLength(contour, True)
    best = contour
    for _ in range(20):
        eps = 0.5 * (lo + hi)
        poly = cv2.approxPolyDP(contour, eps, True)
        if len(poly) == n_vertices:
            best = poly
            break
        if abs(len(poly) - n_vertices) < abs(len(best) - n_vertices):
            best = poly
        if len(poly) > n_vertices:
            lo = eps
        else:
            hi = eps
    cv2.fillPoly(out, [best], 1)
    return out


def convex_hull(mask: Mask, rng: np.random.Generator) -> Mask:
    """Filled convex hull of all foreground components (empty stays empty)."""
    out = np.zeros_like(mask)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return out
    hull = cv2.convexHull(np.vstack(contours))
    cv2.fillPoly(out, [hull], 1)
    return out


def bounding_box(mask: Mask, rng: np.random.Generator) -> Mask:
    """Filled bounding rectangle of the foreground (empty stays empty)."""
    out = np.zeros_like(mask)
    x, y, w, h = cv2.boundingRect(mask)
    out[y : y + h, x : x + w] = 1
    return out


# --------------------------------------------------------------------------------------
# Boundary perturbations
# --------------------------------------------------------------------------------------


def jagged_boundary(mask: Mask, rng: np.random.Generator, kernel_size: int) -> Mask:
    """Re-draw the boundary band (dilate - erode) as random 50% foreground."""
    kernel = _square_kernel(kernel_size)
    band = cv2.dilate(mask, kernel) - cv2.erode(mask, kernel)
    out = mask.copy()
    np.copyto(out, _random_bits(rng, mask.shape), where=band.view(bool))
    return out


def smooth_boundary(mask: Mask, rng: np.random.Generator, blur_size: int) -> Mask:
    """Gaussian blur of the given (odd) size, then threshold at 0.5."""
    blurred = cv2.GaussianBlur(mask.astype(np.float32), (blur_size, blur_size), 0)
    return (blurred > 0.5).astype(np.uint8)


def elastic(mask: Mask, rng: np.random.Generator, alpha: float, sigma: float) -> Mask:
    """Elastic deformation: white-noise displacement * alpha, smoothed by a Gaussian (sigma).

    The white noise is uniform with unit variance rather than normal: after smoothing over
    hundreds of pixels the field is Gaussian either way (central limit theorem), and
    uniform draws are ten times cheaper.
    """
    h, w = mask.shape
    noise = (rng.random((2, h, w), dtype=np.float32) - np.float32(0.5)) * np.float32(
        math.sqrt(12.0)
    )
    dx = cv2.GaussianBlur(noise[0], (0, 0), sigma) * alpha
    dy = cv2.GaussianBlur(noise[1], (0, 0), sigma) * alpha
    xs, ys = _pixel_grid(h, w)
    return cv2.remap(
        mask, xs + dx, ys + dy, interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE
    )


def _grid_axis(n: int, num_steps: int, limit: float, rng: np.random.Generator) -> np.ndarray:
    """Source index for each output index along one axis of a grid distortion.

    The axis is cut into `num_steps` equal cells; each cell's length is scaled by a factor
    drawn from [1 - limit, 1 + limit] and the cells are renormalised to span the axis, so
    the map is monotone and stays inside the image.
    """
    lengths = 1.0 + rng.uniform(-limit, limit, num_steps)
    nodes_src = np.concatenate([[0.0], np.cumsum(lengths)])
    nodes_src *= (n - 1) / nodes_src[-1]
    nodes_dst = np.linspace(0.0, n - 1, num_steps + 1)
    src = np.interp(np.arange(n), nodes_dst, nodes_src)
    return np.clip(np.rint(src), 0, n - 1).astype(np.intp)


def grid_distortion(
    mask: Mask, rng: np.random.Generator, num_steps: int, distort_limit: float
) -> Mask:
    """Grid distortion: independent piecewise-linear stretches of rows and columns.

    The map is separable, so it is applied as two index gathers (nearest neighbour).
    """
    h, w = mask.shape
    xs = _grid_axis(w, num_steps, distort_limit, rng)
    ys = _grid_axis(h, num_steps, distort_limit, rng)
    return mask.take(ys, axis=0).take(xs, axis=1)


# --------------------------------------------------------------------------------------
# Structural corruptions
# --------------------------------------------------------------------------------------


def _random_pixel(
    mask: Mask, value: int, rng: np.random.Generator, tries: int = 32
) -> tuple[int, int] | None:
    """A uniformly random (x, y) where `mask == value`, or None if there is none.

    Rejection sampling (in the foreground's bounding box when looking for foreground) is
    exact and avoids listing every pixel; after `tries` misses the candidates are listed.
    """
    h, w = mask.shape
    if value:
        x0, y0, bw, bh = cv2.boundingRect(mask)
    else:
        x0, y0, bw, bh = 0, 0, w, h
    if bw > 0 and bh > 0:
        ys = rng.integers(y0, y0 + bh, tries)
        xs = rng.integers(x0, x0 + bw, tries)
        hits = np.flatnonzero(mask[ys, xs] == value)
        if hits.size:
            return int(xs[hits[0]]), int(ys[hits[0]])
    candidates = np.flatnonzero(mask.ravel() == value)
    if candidates.size == 0:
        return None
    p = int(candidates[rng.integers(candidates.size)])
    return p % w, p // w


def _with_discs(
    mask: Mask,
    count: int,
    radius_range: tuple[int, int],
    value: int,
    rng: np.random.Generator,
) -> Mask:
    """A copy of `mask` with `count` filled discs of `value`, each centred on a random
    pixel of `mask` that is not `value` (none when `mask` has no such pixel)."""
    out = mask.copy()
    for _ in range(count):
        centre = _random_pixel(mask, 1 - value, rng)
        if centre is None:
            break
        r = int(rng.integers(radius_range[0], radius_range[1] + 1))
        cv2.circle(out, centre, r, value, -1)
    return out


def holes(
    mask: Mask, rng: np.random.Generator, num_holes: int, radius_range: tuple[int, int]
) -> Mask:
    """Carve discs centred on random foreground pixels (empty stays empty)."""
    return _with_discs(mask, num_holes, radius_range, 0, rng)


def islands(
    mask: Mask, rng: np.random.Generator, num_islands: int, radius_range: tuple[int, int]
) -> Mask:
    """Add discs centred on random background pixels (full stays full)."""
    return _with_discs(mask, num_islands, radius_range, 1, rng)


def holes_and_islands(
    mask: Mask,
    rng: np.random.Generator,
    num_holes: int,
    num_islands: int,
    radius_range: tuple[int, int],
) -> Mask:
    """Holes in the foreground, then islands in the remaining background."""
    out = holes(mask, rng, num_holes, radius_range)
    return islands(out, rng, num_islands, radius_range)


def largest_component(mask: Mask, rng: np.random.Generator) -> Mask:
    """Keep the largest 8-connected component.

    A no-op on single-component masks (kept, as in the paper; the VQM benchmark reports
    how often it happens).
    """
    if _component_count_at_most_one(mask):
        return mask.copy()
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    keep = 1 + int(np.argmax(np.bincount(labels.ravel(), minlength=n)[1:]))
    return (labels == keep).astype(np.uint8)


def drop_component(mask: Mask, rng: np.random.Generator) -> Mask:
    """Remove one random 8-connected component; a no-op on single-component masks."""
    if _component_count_at_most_one(mask):
        return mask.copy()
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    out = mask.copy()
    out[labels == int(rng.integers(1, n))] = 0
    return out


def rectangle_dropout(
    mask: Mask, rng: np.random.Generator, size_range: tuple[float, float]
) -> Mask:
    """Zero one rectangle whose sides are a random fraction of the image sides."""
    h, w = mask.shape
    rh = int(h * rng.uniform(*size_range))
    rw = int(w * rng.uniform(*size_range))
    y = int(rng.integers(0, max(1, h - rh)))
    x = int(rng.integers(0, max(1, w - rw)))
    out = mask.copy()
    out[y : y + rh, x : x + rw] = 0
    return out


# --------------------------------------------------------------------------------------
# Geometric corruptions
# --------------------------------------------------------------------------------------


def shift(mask: Mask, rng: np.random.Generator, max_ratio: float) -> Mask:
    """Translate by up to `max_ratio` of the image size on each axis (zero fill)."""
    h, w = mask.shape
    dy = int(h * max_ratio * rng.uniform(-1.0, 1.0))
    dx = int(w * max_ratio * rng.uniform(-1.0, 1.0))
    return _translate(mask, dx, dy)


def scale(mask: Mask, rng: np.random.Generator, scale_range: tuple[float, float]) -> Mask:
    """Scale about the foreground centroid by a factor drawn from `scale_range`."""
    factor = rng.uniform(*scale_range)
    c = _centroid(mask)
    if c is None:
        return mask.copy()
    return _warp(mask, cv2.getRotationMatrix2D((c[1], c[2]), 0.0, factor))


def rotate(mask: Mask, rng: np.random.Generator, max_degrees: float) -> Mask:
    """Rotate about the foreground centroid by up to +-`max_degrees` (image unchanged)."""
    angle = rng.uniform(-max_degrees, max_degrees)
    c = _centroid(mask)
    if c is None:
        return mask.copy()
    return _warp(mask, cv2.getRotationMatrix2D((c[1], c[2]), angle, 1.0))


def random_affine(
    mask: Mask,
    rng: np.random.Generator,
    scale_range: tuple[float, float],
    max_shift: float,
    max_degrees: float,
) -> Mask:
    """Scale, rotation and shift about the image centre."""
    h, w = mask.shape
    factor = rng.uniform(*scale_range)
    dy = int(h * max_shift * rng.uniform(-1.0, 1.0))
    dx = int(w * max_shift * rng.uniform(-1.0, 1.0))
    angle = rng.uniform(-max_degrees, max_degrees)
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, factor)
    matrix[0, 2] += dx
    matrix[1, 2] += dy
    return _warp(mask, matrix)


# --------------------------------------------------------------------------------------
# Blob approximations (what an early f_theta predicts)
# --------------------------------------------------------------------------------------


def gaussian_blob(mask: Mask, rng: np.random.Generator, size_factor: float) -> Mask:
    """Axis-aligned Gaussian at the centroid with the mask's spread, cut to the mask's area.

    The Gaussian's widths are the foreground's coordinate standard deviations times
    `size_factor`; it is thresholded so that the blob has the mask's area. As in the
    release, the area-matched threshold makes the result independent of `size_factor`
    (it only matters where the blob meets the image border); both pool entries are kept
    for a faithful sampling mix.
    """
    h, w = mask.shape
    m = _moments(mask)
    area = round(m["m00"])
    if area == 0:
        return np.zeros_like(mask)
    cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    sx = max(math.sqrt(m["mu20"] / m["m00"]) * size_factor, 0.5)
    sy = max(math.sqrt(m["mu02"] / m["m00"]) * size_factor, 0.5)
    qx = ((np.arange(w, dtype=np.float32) - cx) / sx) ** 2
    qy = ((np.arange(h, dtype=np.float32) - cy) / sy) ** 2
    q = qy[:, None] + qx[None, :]
    # Level set {q < t} is an ellipse of area pi * sx * sy * t; check, and fall back to an
    # exact selection of the `area` innermost pixels where the image border clips it.
    t = area / (math.pi * sx * sy)
    out = (q < t).astype(np.uint8)
    if abs(int(np.count_nonzero(out)) - area) > max(2, 0.02 * area):
        if area >= q.size:
            return np.ones_like(mask)
        kth = np.partition(q.ravel(), area - 1)[area - 1]
        out = (q <= kth).astype(np.uint8)
    return out


def circular_blob(mask: Mask, rng: np.random.Generator, size_factor: float) -> Mask:
    """Disc at the centroid with the mask's area (radius times `size_factor`)."""
    out = np.zeros_like(mask)
    c = _centroid(mask)
    if c is None:
        return out
    area, cx, cy = c
    radius = int(math.sqrt(area / math.pi) * size_factor)
    cv2.circle(out, (int(cx), int(cy)), radius, 1, -1)
    return out


# --------------------------------------------------------------------------------------
# Catastrophic corruptions and identity
# --------------------------------------------------------------------------------------


def invert(mask: Mask, rng: np.random.Generator) -> Mask:
    """Swap foreground and background."""
    return 1 - mask


def empty(mask: Mask, rng: np.random.Generator) -> Mask:
    """All background."""
    return np.zeros_like(mask)


def full(mask: Mask, rng: np.random.Generator) -> Mask:
    """All foreground."""
    return np.ones_like(mask)


def random_noise(mask: Mask, rng: np.random.Generator, density: float) -> Mask:
    """Independent random pixels, foreground with probability `density`."""
    if density == 0.5:
        return _random_bits(rng, mask.shape)
    return (rng.random(mask.shape, dtype=np.float32) < density).astype(np.uint8)


def identity(mask: Mask, rng: np.random.Generator) -> Mask:
    """The mask unchanged (a copy): target Dice 1."""
    return mask.copy()


# --------------------------------------------------------------------------------------
# Pixel-parameter scaling
# --------------------------------------------------------------------------------------


def _scale_kernel(k: int, s: float) -> int:
    return 2 * max(1, round((k - 1) / 2 * s)) + 1


def _scale_length(v: float, s: float) -> float:
    return v * s


def _scale_radius_range(r: tuple[int, int], s: float) -> tuple[int, int]:
    lo = max(1, round(r[0] * s))
    return lo, max(lo, round(r[1] * s))


def _scale_alpha(a: float, s: float) -> float:
    return a * s * s


SCALERS: dict[str, Callable[[Any, float], Any]] = {
    "kernel": _scale_kernel,
    "length": _scale_length,
    "radius_range": _scale_radius_range,
    "alpha": _scale_alpha,
}


def size_scale(shape: tuple[int, ...], reference: int = REFERENCE_SIZE) -> float:
    """Scale factor of a mask relative to the paper's 224 x 224."""
    return math.sqrt(shape[0] * shape[1]) / reference


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # identity hashing: params hold dicts
class CorruptionOp:
    """A named corruption: function, parameters at 224 px, sampling weight, pixel params."""

    name: str
    fn: OpFn
    params: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    # Parameter name -> key of SCALERS, for parameters measured in pixels.
    pixel_params: Mapping[str, str] = field(default_factory=dict)

    def resolved_params(self, shape: tuple[int, ...], scale_with_size: bool = True) -> dict:
        """The parameters this op uses on a mask of `shape`."""
        if not scale_with_size or not self.pixel_params:
            return dict(self.params)
        return _resolved(self, shape[0], shape[1])

    def __call__(self, mask: Mask, rng: np.random.Generator, scale_with_size: bool = True) -> Mask:
        return self.fn(mask, rng, **self.resolved_params(mask.shape, scale_with_size))


@lru_cache(maxsize=1024)
def _resolved(op: CorruptionOp, h: int, w: int) -> dict:
    s = size_scale((h, w))
    params = dict(op.params)
    for key, kind in op.pixel_params.items():
        params[key] = SCALERS[kind](params[key], s)
    return params


def _op(name, fn, weight, pixel_params=None, **params) -> CorruptionOp:
    return CorruptionOp(name, fn, params, weight, pixel_params or {})


_K = {"kernel_size": "kernel"}
_R = {"radius_range": "radius_range"}

# Single pool (docs/METHOD.md §2.2): name, function, weight, parameters at 224 px.
SINGLE_POOL: tuple[CorruptionOp, ...] = (
    _op("erosion_5", erosion, 1.0, _K, kernel_size=5),
    _op("erosion_7", erosion, 1.0, _K, kernel_size=7),
    _op("erosion_9", erosion, 0.8, _K, kernel_size=9),
    _op("dilation_5", dilation, 1.0, _K, kernel_size=5),
    _op("dilation_7", dilation, 1.0, _K, kernel_size=7),
    _op("dilation_9", dilation, 0.8, _K, kernel_size=9),
    _op("opening_5", opening, 0.5, _K, kernel_size=5),
    _op("closing_5", closing, 0.5, _K, kernel_size=5),
    _op("ellipse", ellipse, 1.0),
    _op("polygon_3", polygon, 0.5, n_vertices=3),
    _op("polygon_5", polygon, 0.8, n_vertices=5),
    _op("polygon_8", polygon, 0.8, n_vertices=8),
    _op("convex_hull", convex_hull, 1.0),
    _op("bounding_box", bounding_box, 0.5),
    _op("jagged_3", jagged_boundary, 1.0, _K, kernel_size=3),
    _op("jagged_5", jagged_boundary, 1.0, _K, kernel_size=5),
    _op("smooth_11", smooth_boundary, 0.8, {"blur_size": "kernel"}, blur_size=11),
    _op("smooth_15", smooth_boundary, 0.8, {"blur_size": "kernel"}, blur_size=15),
    _op("elastic_light", elastic, 1.0, {"alpha": "alpha", "sigma": "length"}, alpha=30, sigma=4),
    _op("elastic_heavy", elastic, 0.8, {"alpha": "alpha", "sigma": "length"}, alpha=60, sigma=5),
    _op("grid_light", grid_distortion, 1.0, num_steps=5, distort_limit=0.2),
    _op("grid_heavy", grid_distortion, 0.7, num_steps=8, distort_limit=0.4),
    _op("holes_small", holes, 1.0, _R, num_holes=2, radius_range=(3, 8)),
    _op("holes_large", holes, 0.8, _R, num_holes=3, radius_range=(8, 15)),
    _op("islands_small", islands, 1.0, _R, num_islands=2, radius_range=(3, 8)),
    _op(
        "holes_and_islands",
        holes_and_islands,
        1.0,
        _R,
        num_holes=2,
        num_islands=2,
        radius_range=(5, 15),
    ),
    _op("largest_only", largest_component, 0.8),
    _op("drop_component", drop_component, 0.5),
    _op("rect_dropout", rectangle_dropout, 0.8, size_range=(0.1, 0.3)),
    _op("shift_small", shift, 1.0, max_ratio=0.1),
    _op("shift_medium", shift, 0.8, max_ratio=0.2),
    _op("shift_large", shift, 0.5, max_ratio=0.3),
    _op("scale_down", scale, 1.0, scale_range=(0.75, 0.9)),
    _op("scale_up", scale, 1.0, scale_range=(1.1, 1.25)),
    _op("rotate_small", rotate, 1.0, max_degrees=15.0),
    _op("rotate_large", rotate, 0.7, max_degrees=30.0),
    _op(
        "random_affine",
        random_affine,
        0.8,
        scale_range=(0.9, 1.1),
        max_shift=0.1,
        max_degrees=15.0,
    ),
    _op("gaussian_blob", gaussian_blob, 1.0, size_factor=1.0),
    _op("gaussian_blob_large", gaussian_blob, 0.7, size_factor=1.2),
    _op("circular_blob", circular_blob, 0.8, size_factor=1.0),
)

# Heavy pool (docs/METHOD.md §2.3): weight 1.0 each.
HEAVY_POOL: tuple[CorruptionOp, ...] = (
    _op("erosion_11", erosion, 1.0, _K, kernel_size=11),
    _op("dilation_11", dilation, 1.0, _K, kernel_size=11),
    _op("shift_very_large", shift, 1.0, max_ratio=0.4),
    _op("scale_very_small", scale, 1.0, scale_range=(0.5, 0.7)),
    _op("scale_very_large", scale, 1.0, scale_range=(1.4, 1.6)),
    _op("grid_very_heavy", grid_distortion, 1.0, num_steps=12, distort_limit=0.6),
    _op("holes_many", holes, 1.0, _R, num_holes=5, radius_range=(10, 20)),
)

# Catastrophic pool (docs/METHOD.md §2.4).
CATASTROPHIC_POOL: tuple[CorruptionOp, ...] = (
    _op("invert", invert, 1.0),
    _op("empty", empty, 0.5),
    _op("full", full, 0.5),
    _op("random_50", random_noise, 0.3, density=0.5),
)

# Blob category (docs/METHOD.md §2.1): drawn uniformly from these single-pool ops; never chained.
BLOB_POOL_NAMES: tuple[str, ...] = (
    "gaussian_blob",
    "gaussian_blob_large",
    "circular_blob",
    "convex_hull",
    "bounding_box",
)

IDENTITY = _op("identity", identity, 1.0)

REGISTRY: dict[str, CorruptionOp] = {
    op.name: op for op in (IDENTITY, *SINGLE_POOL, *HEAVY_POOL, *CATASTROPHIC_POOL)
}

_SINGLE_BY_NAME = {op.name: op for op in SINGLE_POOL}
BLOB_POOL: tuple[CorruptionOp, ...] = tuple(_SINGLE_BY_NAME[n] for n in BLOB_POOL_NAMES)
# Chained corruptions draw from the single pool without the blob approximations.
CHAINABLE_POOL: tuple[CorruptionOp, ...] = tuple(
    op for op in SINGLE_POOL if op.name not in BLOB_POOL_NAMES
)

POOLS: dict[str, tuple[CorruptionOp, ...]] = {
    "single": SINGLE_POOL,
    "heavy": HEAVY_POOL,
    "catastrophic": CATASTROPHIC_POOL,
    "blob": BLOB_POOL,
    "chainable": CHAINABLE_POOL,
}


def get_op(name: str) -> CorruptionOp:
    """Look an op up by name; an unknown name lists the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown corruption op {name!r}; valid: {sorted(REGISTRY)}") from None


def apply_op(name: str, mask: Mask, rng: np.random.Generator, scale_with_size: bool = True) -> Mask:
    """Apply a registered op by name."""
    return get_op(name)(mask, rng, scale_with_size)
