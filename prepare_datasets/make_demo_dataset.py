"""Generate the built-in synthetic dermoscopy-like demo set (no download, CPU-friendly).

    python -m prepare_datasets.make_demo_dataset --output_dir prepare_datasets/demo_data

Each image is skin (one of several tones, low-frequency shading, vignetting, fine texture)
with one pigmented lesion (irregular, lobulated border; 3% to 45% of the image; brown, dark
brown, reddish or bluish-grey with blotches, globules or a pigment network; some faint,
some in two parts or cut by the image border) and, in about half the images, dark hairs
drawn over lesion and skin. The mask is the lesion's exact region: the lesion's opacity is
a smooth function of one scalar field and the mask is where that opacity exceeds one half,
so the visible lesion and its label agree to the pixel; hairs and the dermoscope's dark
frame are drawn after the mask is fixed (the frame cuts the mask, hairs never do).

The output has the real sets' layout (data/io.py reads it): `images/<id>.png` (RGB),
`masks/<id>.png` (0/255 grey), `train.csv`, `val.csv`, `test.csv` (`image_path,mask_path`,
relative to the CSV's folder) and `unlabeled.csv` (`img_path`; images only). Image ``i``
of a split depends only on (seed, split, i), so changing one split's size leaves the other
splits' images as they were, and the same arguments give byte-identical files.

`demo_manifest.json` records the arguments and every file written. A folder that holds a
complete set made with the same arguments is reused as is; a folder holding anything else
is refused unless ``overwrite`` is set, and even then only files listed in an earlier demo
manifest are deleted.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path, from any folder

import cv2
import numpy as np
from tqdm import tqdm

from prepare_datasets.cli import report_error, same_named
from prepare_datasets.output_folder import (
    ManifestFile,
    claim_output_folder,
    visible_names,
    write_image,
    write_text_atomic,
)

MANIFEST = ManifestFile(
    "demo_manifest.json", "prepare_datasets.make_demo_dataset", indent=2, format_version=1
)

SPLITS = ("train", "val", "test", "unlabeled")
# Key of each split in the per-image seed, so that a split's images do not depend on the
# sizes of the other splits.
_SPLIT_KEYS = {"train": 1, "val": 2, "test": 3, "unlabeled": 4}
# Sample ids: images/demo_train_0001.png, ..., images/demo_unl_0400.png.
_ID_PREFIX = {
    "train": "demo_train",
    "val": "demo_val",
    "test": "demo_test",
    "unlabeled": "demo_unl",
}

# Lengths below are in pixels at 128 x 128 and scale with the image size.
_REF_SIZE = 128.0

# Skin tones (RGB in [0, 1]) as seen under a dermoscope's light: pale pink to brown.
_SKIN_TONES = np.array(
    [
        [0.93, 0.78, 0.74],
        [0.90, 0.72, 0.62],
        [0.84, 0.64, 0.52],
        [0.74, 0.54, 0.42],
        [0.60, 0.42, 0.32],
    ],
    dtype=np.float32,
)
# Per-channel transmittance of each pigment at full opacity (the skin colour is multiplied
# by it), so that a lesion is darker than the skin it sits on whatever the skin tone.
_PIGMENTS = {
    "brown": np.array([0.56, 0.42, 0.32], dtype=np.float32),
    "dark_brown": np.array([0.32, 0.24, 0.20], dtype=np.float32),
    "reddish": np.array([0.74, 0.42, 0.42], dtype=np.float32),
    "bluish_grey": np.array([0.46, 0.50, 0.60], dtype=np.float32),
}
_PIGMENT_NAMES = tuple(_PIGMENTS)
_PIGMENT_WEIGHTS = np.array([0.40, 0.25, 0.20, 0.15])


# --------------------------------------------------------------------------------------
# Drawing one sample
# --------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-std noise varying over about `cells` blobs per side (float32)."""
    grid = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    # Upsample a slightly larger grid and crop, so that the borders are as smooth as the
    # middle (cubic interpolation overshoots at the edges of its input).
    big = round(size * (cells + 3) / cells)
    field = cv2.resize(grid, (big, big), interpolation=cv2.INTER_CUBIC)
    off = (big - size) // 2
    field = field[off : off + size, off : off + size]
    return (field - field.mean()) / (field.std() + 1e-6)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _lesion_field(
    rng: np.random.Generator, size: int, cx: float, cy: float, scale: float
) -> np.ndarray:
    """Radial distance (pixels) from (cx, cy) divided by an irregular, lobulated outline.

    The outline r(theta) = 1 + sum_k a_k cos(k theta + phi_k) (k = 2..9) on an ellipse of
    random orientation; thresholding the field at R gives a blob of radius about R.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    angle = rng.uniform(0.0, math.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    u = ca * dx + sa * dy
    v = (-sa * dx + ca * dy) / rng.uniform(0.6, 1.0)
    dist = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    lobulated = rng.random() < 0.4
    outline = np.ones_like(theta)
    for k in range(2, 10):
        amp = rng.uniform(0.0, 0.22 if k <= 3 else 0.10) / (k**0.6)
        if lobulated and 3 <= k <= 6:
            amp += rng.uniform(0.0, 0.10)
        outline += amp * np.cos(k * theta + rng.uniform(0.0, 2 * math.pi))
    return dist / np.clip(outline, 0.35, None) / scale


def _draw_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image and its {0, 255} uint8 mask."""
    s = size / _REF_SIZE
    area = size * size

    # ---- skin: tone, shading, vignetting, texture ------------------------------------
    t = rng.uniform(0.0, len(_SKIN_TONES) - 1)
    lo = int(t)
    hi = min(lo + 1, len(_SKIN_TONES) - 1)
    tone = (1 - (t - lo)) * _SKIN_TONES[lo] + (t - lo) * _SKIN_TONES[hi]
    tone = tone * rng.uniform(0.94, 1.06, size=3).astype(np.float32)
    # Gentle, large-scale shading only: a strong dark patch of skin would look like an
    # unlabeled lesion.
    shading = 1.0 + rng.uniform(0.015, 0.04) * _smooth_noise(rng, size, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    vx, vy = rng.uniform(0.35, 0.65, size=2) * size
    radius2 = ((xx - vx) ** 2 + (yy - vy) ** 2) / (0.5 * size) ** 2
    shading *= 1.0 - rng.uniform(0.0, 0.22) * np.clip(radius2, 0.0, 2.0) / 2.0
    texture = 1.0 + rng.uniform(0.015, 0.04) * _smooth_noise(rng, size, max(4, size // 6))
    # Redness varies across the skin (erythema, vessels under the surface).
    redness = rng.uniform(0.0, 0.035) * _smooth_noise(rng, size, 3)
    skin = tone[None, None, :] * (shading * texture)[..., None]
    skin[..., 1] *= 1.0 - np.clip(redness, 0.0, None)
    skin[..., 2] *= 1.0 - 0.7 * np.clip(redness, 0.0, None)

    # ---- lesion geometry: one scalar field h, lesion = {h < R} ----------------------
    frac = rng.uniform(math.sqrt(0.03), math.sqrt(0.45)) ** 2
    r_est = math.sqrt(frac * area / math.pi)
    has_frame = rng.random() < 0.15
    touches_border = not has_frame and rng.random() < 0.12
    if touches_border:
        # Centre near one edge, so that the lesion is cut by the image border.
        edge = rng.integers(4)
        along = rng.uniform(0.25, 0.75) * size
        depth = rng.uniform(0.2, 0.6) * r_est + 2.0
        cx, cy = [(depth, along), (size - 1 - depth, along), (along, depth),
                  (along, size - 1 - depth)][edge]  # fmt: skip
    else:
        cx, cy = size / 2 + rng.uniform(-0.15, 0.15, size=2) * size
    h = _lesion_field(rng, size, cx, cy, 1.0)
    if rng.random() < 0.12:
        # A second, smaller component a little apart from the first.
        ang = rng.uniform(0.0, 2 * math.pi)
        gap = rng.uniform(1.3, 1.8) * r_est
        cx2 = float(np.clip(cx + gap * math.cos(ang), 0.1 * size, 0.9 * size))
        cy2 = float(np.clip(cy + gap * math.sin(ang), 0.1 * size, 0.9 * size))
        h = np.minimum(h, _lesion_field(rng, size, cx2, cy2, rng.uniform(0.3, 0.55)))
    # Fine border irregularity, in pixels relative to the lesion's size.
    rough = rng.uniform(0.03, 0.12) * r_est
    h = h + rough * _smooth_noise(rng, size, max(6, int(size / 10)))
    # Threshold at the quantile that gives exactly the drawn area fraction.
    radius = float(np.quantile(h, frac))
    softness = rng.uniform(0.4, 2.5) * s
    alpha = _sigmoid((radius - h) / softness)
    inside = h < radius

    # ---- lesion appearance: pigment, contrast, blotches, globules, network -----------
    faint = rng.random() < 0.12
    contrast = rng.uniform(0.35, 0.5) if faint else rng.uniform(0.6, 1.0)
    names = rng.choice(len(_PIGMENT_NAMES), size=2, p=_PIGMENT_WEIGHTS)
    primary = _PIGMENTS[_PIGMENT_NAMES[names[0]]]
    secondary = _PIGMENTS[_PIGMENT_NAMES[names[1]]]
    mix = _sigmoid(4.0 * (_smooth_noise(rng, size, 5) - rng.uniform(0.3, 1.5)))
    transmit = primary[None, None, :] * (1 - mix[..., None]) + secondary * mix[..., None]
    # Darker centre or darker rim.
    rel = np.clip(h / max(radius, 1e-3), 0.0, 1.0)
    density = 1.0 - rng.uniform(-0.25, 0.35) * rel**2
    density *= 1.0 + rng.uniform(0.1, 0.3) * _smooth_noise(rng, size, 6)
    if rng.random() < 0.35:
        # Pigment network: the edges of a Voronoi tessellation (a honeycomb of thin lines).
        cell = rng.uniform(4.0, 7.0) * s
        n_seeds = max(4, int(area / cell**2))
        seeds = np.full((size, size), 255, np.uint8)
        px = rng.integers(0, size, size=(n_seeds, 2))
        seeds[px[:, 1], px[:, 0]] = 0
        _, labels = cv2.distanceTransformWithLabels(
            seeds, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
        )
        edges = np.zeros((size, size), np.float32)
        edges[:, 1:] += labels[:, 1:] != labels[:, :-1]
        edges[1:, :] += labels[1:, :] != labels[:-1, :]
        edges = cv2.GaussianBlur(np.minimum(edges, 1.0), (0, 0), 0.5 * s)
        density += rng.uniform(0.2, 0.45) * edges / (edges.max() + 1e-6)
    opacity = np.clip(contrast * alpha * np.clip(density, 0.3, 1.4), 0.0, 1.0)
    image = skin * (1.0 - opacity[..., None] * (1.0 - transmit))
    if rng.random() < 0.4 and inside.any():
        # Dots and globules inside the lesion.
        dots = np.zeros((size, size), np.uint8)
        ys, xs = np.nonzero(inside)
        for j in rng.choice(len(ys), size=int(rng.integers(4, 20)), replace=True):
            # Sub-pixel radius (4 fractional bits), so that small dots are round.
            r = max(8, round(rng.uniform(0.7, 2.0) * s * 16))
            cv2.circle(dots, (int(xs[j]) * 16, int(ys[j]) * 16), r, 255, -1, cv2.LINE_AA, 4)
        d = (dots.astype(np.float32) / 255.0) * alpha * rng.uniform(0.25, 0.5)
        image *= 1.0 - d[..., None]

    # ---- optics: slight blur, the dermoscope's dark circular frame ------------------
    image = cv2.GaussianBlur(image, (0, 0), 0.6 * s)
    if has_frame:
        fx, fy = size / 2 + rng.uniform(-0.05, 0.05, size=2) * size
        fov_r = rng.uniform(0.60, 0.72) * size
        dist = np.sqrt((xx - fx) ** 2 + (yy - fy) ** 2)
        fov = _sigmoid((fov_r - dist) / (1.5 * s))
        image = image * (0.06 + 0.94 * fov[..., None])
        inside &= fov > 0.5

    # ---- hair, drawn over lesion and skin (never part of the mask) ------------------
    if rng.random() < 0.5:
        sub = 16  # cv2 drawing with 4 fractional bits
        hair = np.zeros((size, size), np.uint8)
        n_hairs = int(rng.integers(1, 4)) if rng.random() < 0.7 else int(rng.integers(4, 10))
        tt = np.linspace(0.0, 1.0, 24, dtype=np.float32)[:, None]
        for _ in range(n_hairs):
            # A gently curved quadratic Bezier crossing the image from one side to another.
            a0 = rng.uniform(0.0, 2 * math.pi)
            a2 = a0 + math.pi + rng.uniform(-1.0, 1.0)
            shift = rng.uniform(-0.45, 0.45) * np.array([-math.sin(a0), math.cos(a0)])
            p0 = size * (0.5 + shift + 0.75 * np.array([math.cos(a0), math.sin(a0)]))
            p2 = size * (0.5 + shift + 0.75 * np.array([math.cos(a2), math.sin(a2)]))
            p1 = (p0 + p2) / 2 + rng.normal(0.0, 0.2 * size, size=2)
            curve = (1 - tt) ** 2 * p0 + 2 * (1 - tt) * tt * p1 + tt**2 * p2
            pts = np.round(curve * sub).astype(np.int32)[None]
            thick = max(1, round(rng.uniform(0.6, 1.6) * s))
            cv2.polylines(hair, pts, False, int(rng.integers(150, 256)), thick, cv2.LINE_AA, 4)
        ha = hair.astype(np.float32)[..., None] / 255.0
        hair_rgb = rng.uniform(0.08, 0.25) * np.array([1.0, 0.85, 0.75], dtype=np.float32)
        image = image * (1.0 - ha) + hair_rgb * ha

    # ---- sensor noise --------------------------------------------------------------
    image = image + rng.normal(0.0, rng.uniform(0.006, 0.02), size=image.shape).astype(np.float32)
    image_u8 = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    mask_u8 = inside.astype(np.uint8) * 255
    return image_u8, mask_u8


# H&E-like tissue (eosin pink to lilac) and the haematoxylin purple of nuclei (RGB, [0, 1]).
_TISSUE_TONES = np.array(
    [[0.93, 0.70, 0.80], [0.88, 0.62, 0.76], [0.84, 0.66, 0.84]], dtype=np.float32
)
_NUCLEUS = np.array([0.36, 0.22, 0.52], dtype=np.float32)


def _draw_gland_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One "glands" image (the second demo target, for VerSemi's multi-task demo): 1-4
    elongated, hollow glands, a dark purple epithelial rim around a pale lumen, on
    H&E-like tissue strewn with nuclei; the mask is every gland, rim and lumen."""
    s = size / _REF_SIZE
    tone = _TISSUE_TONES[rng.integers(len(_TISSUE_TONES))] * rng.uniform(0.95, 1.05, 3)
    shade = 1.0 + 0.05 * _smooth_noise(rng, size, 3)[..., None]
    image = np.clip(tone[None, None, :] * shade, 0, 1).astype(np.float32)
    # stroma fibres: a faint oriented texture, unlike the skin's isotropic grain
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    fibres = np.sin(
        (xx * math.cos(angle) + yy * math.sin(angle)) / (1.6 * s) + 3 * _smooth_noise(rng, size, 6)
    )
    image *= (1.0 - 0.04 * fibres)[..., None]
    inside = np.zeros((size, size), bool)
    rim_alpha = np.zeros((size, size), np.float32)
    lumen_alpha = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        a = rng.uniform(10, 26) * s  # half length
        b = a / rng.uniform(1.6, 3.0)  # elongated
        th = rng.uniform(0, math.pi)
        u = (xx - cx) * math.cos(th) + (yy - cy) * math.sin(th)
        v = -(xx - cx) * math.sin(th) + (yy - cy) * math.cos(th)
        wobble = 1.0 + 0.06 * _smooth_noise(rng, size, 4)
        r = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wobble
        gland = r < 1.0
        inside |= gland
        rim_alpha = np.maximum(rim_alpha, _sigmoid((1.0 - r) * 14.0))
        lumen_alpha = np.maximum(lumen_alpha, _sigmoid((0.62 - r) * 14.0))
    # scattered stromal nuclei first (outside and under the glands), then the glands
    for _ in range(int(60 * s * s)):
        y, x = rng.integers(0, size, 2)
        cv2.circle(image, (int(x), int(y)), max(1, round(1.2 * s)), _NUCLEUS.tolist(), -1)
    rim = _NUCLEUS * rng.uniform(0.9, 1.15)
    lumen = np.array([0.97, 0.93, 0.96], np.float32)
    image = image * (1 - rim_alpha[..., None]) + rim[None, None] * rim_alpha[..., None]
    image = image * (1 - lumen_alpha[..., None]) + lumen[None, None] * lumen_alpha[..., None]
    image *= 1.0 + 0.03 * rng.standard_normal((size, size, 1)).astype(np.float32)
    image_u8 = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return image_u8, inside.astype(np.uint8) * 255


# What the demo images show: --kind.
KINDS = {"dermoscopy": _draw_sample, "glands": _draw_gland_sample}


# --------------------------------------------------------------------------------------
# Folder handling
# --------------------------------------------------------------------------------------


def _arguments(
    image_size: int,
    num_train: int,
    num_val: int,
    num_test: int,
    num_unlabeled: int,
    seed: int,
    kind: str = "dermoscopy",
) -> dict:
    # the default kind is not recorded, so that existing dermoscopy sets stay valid
    return {
        **({"kind": kind} if kind != "dermoscopy" else {}),
        "format_version": MANIFEST.format_version,
        "image_size": image_size,
        "num_train": num_train,
        "num_val": num_val,
        "num_test": num_test,
        "num_unlabeled": num_unlabeled,
        "seed": seed,
    }


def _csv_paths(output_dir: Path) -> dict[str, Path]:
    return {split: output_dir / f"{split}.csv" for split in SPLITS}


def _plan(args: dict) -> dict[str, list[str]]:
    """Sample ids per split."""
    counts = {s: args[f"num_{s}"] for s in SPLITS}
    return {s: [f"{_ID_PREFIX[s]}_{i + 1:04d}" for i in range(n)] for s, n in counts.items()}


def _file_list(plan: dict[str, list[str]]) -> list[str]:
    files = [f"{split}.csv" for split in SPLITS]
    for split, ids in plan.items():
        for sid in ids:
            files.append(f"images/{sid}.png")
            if split != "unlabeled":
                files.append(f"masks/{sid}.png")
    return files


def _describe_contents(output_dir: Path, manifest: dict | None, args: dict) -> str:
    if manifest is not None:
        old = manifest.get("arguments")
        old = old if isinstance(old, dict) else {}
        diff = [k for k in args if old.get(k) != args[k]]
        found = ", ".join(f"{k}={old.get(k)}" for k in diff)
        wanted = ", ".join(f"{k}={args[k]}" for k in diff)
        state = "a demo set" if manifest.get("status") == "complete" else "an unfinished demo set"
        return f"{state} generated with {found} (requested {wanted})"
    return f"files that are not a demo set ({visible_names(output_dir)})"


def make_demo_dataset(
    output_dir: str | Path,
    image_size: int = 128,
    num_train: int = 150,
    num_val: int = 30,
    num_test: int = 60,
    num_unlabeled: int = 400,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    kind: str = "dermoscopy",
) -> dict[str, Path]:
    """Write the demo set into `output_dir`; return the CSV paths by split name.

    Keys: ``train``, ``val``, ``test`` (``image_path,mask_path``) and ``unlabeled``
    (``img_path``). A complete set with the same arguments already there is returned as
    is. A non-empty folder holding anything else raises FileExistsError unless
    `overwrite`; overwriting deletes only the files an earlier demo manifest lists (other
    files are left where they are, and same-named files are replaced).
    """
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    for name, n in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test),
                    ("num_unlabeled", num_unlabeled)):  # fmt: skip
        if n < 1 or n > 9999:
            raise ValueError(f"{name} must be between 1 and 9999, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"--output_dir {output_dir} exists and is not a folder")

    args = _arguments(image_size, num_train, num_val, num_test, num_unlabeled, seed, kind)
    plan = _plan(args)
    files = _file_list(plan)
    csvs = _csv_paths(output_dir)

    # An interrupted or damaged run with the same arguments is ours to redo; anything else
    # in a non-empty folder needs the user's consent.
    if claim_output_folder(
        output_dir,
        MANIFEST,
        files,
        lambda old: old.get("arguments") == args,
        lambda old: _describe_contents(output_dir, old, args),
        overwrite,
    ):
        if progress:
            print(f"demo set already present in {output_dir} (same arguments); not regenerated")
        return csvs
    manifest = {"generator": MANIFEST.generator, "status": "in_progress", "arguments": args}
    manifest["files"] = files
    MANIFEST.write(output_dir, manifest)

    total = sum(len(ids) for ids in plan.values())
    bar = tqdm(total=total, desc="demo images", unit="img", disable=not progress)
    for split in SPLITS:
        rows = []
        for i, sid in enumerate(plan[split]):
            rng = np.random.default_rng([seed, _SPLIT_KEYS[split], i])
            image, mask = KINDS[kind](rng, image_size)
            write_image(output_dir / "images" / f"{sid}.png", image)
            if split == "unlabeled":
                rows.append(f"images/{sid}.png")
            else:
                write_image(output_dir / "masks" / f"{sid}.png", mask)
                rows.append(f"images/{sid}.png,masks/{sid}.png")
            bar.update()
        header = "img_path" if split == "unlabeled" else "image_path,mask_path"
        write_text_atomic(csvs[split], "\n".join([header, *rows]) + "\n")
    bar.close()

    manifest["status"] = "complete"
    MANIFEST.write(output_dir, manifest)
    return csvs


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Generate the synthetic dermoscopy-like demo set (images, masks, split "
        "CSVs) so that the whole pipeline runs on a CPU with no download.",
        allow_abbrev=False,
    )
    p.add_argument("--output_dir", default="prepare_datasets/demo_data", help="target folder")
    p.add_argument("--image_size", type=int, default=128, help="side of the square images")
    p.add_argument("--num_train", type=int, default=150, help="labeled training images")
    p.add_argument("--num_val", type=int, default=30, help="labeled validation images")
    p.add_argument("--num_test", type=int, default=60, help="labeled test images")
    p.add_argument("--num_unlabeled", type=int, default=400, help="unlabeled images")
    p.add_argument("--seed", type=int, default=0, help="same seed and arguments: same bytes")
    p.add_argument(
        "--kind",
        choices=list(KINDS),
        default="dermoscopy",
        help="what the images show: skin lesions, or hollow glands on H&E-like tissue (a "
        "second target of another shape and texture, for the multi-task demo)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace whatever the folder holds (only an earlier demo's own files are deleted)",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar or messages")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        csvs = make_demo_dataset(
            a.output_dir,
            progress=not a.no_progress,
            **same_named(
                a, "image_size", *(f"num_{s}" for s in SPLITS), "seed", "overwrite", "kind"
            ),
        )
    except (FileExistsError, ValueError) as exc:
        return report_error(exc)
    if not a.no_progress:
        print(f"demo set ready ({time.perf_counter() - start:.1f} s):")
        for split, path in csvs.items():
            print(f"  {split:<10} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
