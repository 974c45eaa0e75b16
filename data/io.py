"""Reading split CSVs, images and masks, with errors that name the file and line at fault.

Every loader of the project goes through this module, so that a bad CSV, a missing or
undecodable file, or a mask whose size differs from its image is reported once, clearly,
before any training starts.

Masks are accepted in every encoding seen in the wild (0/1, 0/255, RGB, RGBA, 16-bit,
palette PNG, JPEG with compression noise) and returned as {0, 1} uint8: palette masks are
foreground where the index is non-zero, everything else is thresholded at half its range.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from data.image_resize import reduction_factor, resize_image, resize_nearest

# OpenCV's own thread pool is not fork-safe: a loader worker forked while one of its
# threads holds a pool mutex deadlocks in its first cv2 call (seen as a hung test loader
# under load). The project parallelises with its own threads and loader processes, so
# OpenCV runs sequentially in every process that reads images.
cv2.setNumThreads(0)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LABELED_COLUMNS = ("image_path", "mask_path")
# The release's unlabeled CSVs use `img_path` (ISIC subsets carry metadata columns too).
UNLABELED_COLUMN_ALIASES = ("img_path", "image_path")

# How many individual problems one DataError lists before summarising the rest.
_MAX_LISTED = 10


class DataError(ValueError):
    """Bad input data: the message names the file (and CSV line) at fault."""


# --------------------------------------------------------------------------------------
# Single files
# --------------------------------------------------------------------------------------


def binarize_mask(arr: np.ndarray) -> np.ndarray:
    """Return a {0, 1} uint8 mask from any encoding, thresholding at half its range.

    Colour masks are reduced with the maximum over the colour channels (alpha ignored), so
    a lesion drawn in any colour on black is foreground. The coding is read off the peak
    value: below 128 the mask is 0/1-coded (or a small label map) and every non-zero value
    is foreground, threshold 0.5 (a 0/1 mask saved as JPEG has stray 2s, which must not
    make it look 0/255-coded); up to 255 it is 0/255-coded, threshold 127.5; above 255
    (16-bit) the threshold is half the peak.
    """
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    peak = float(arr.max()) if arr.size else 0.0
    if peak < 128.0:
        threshold = 0.5
    elif peak <= 255.0:
        threshold = 127.5
    else:
        threshold = peak / 2.0
    return (arr > threshold).astype(np.uint8)


JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
# libjpeg decodes at 1/2, 1/4 or 1/8 scale for a fraction of the cost of a full decode.
_REDUCED_FLAGS = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header, or None when it cannot be read."""
    try:
        with Image.open(path) as im:  # reads the header only
            return im.size
    except (OSError, ValueError):
        return None


def jpeg_reduction(path: str | Path, size: int, keep_aspect: bool = False) -> int:
    """The largest JPEG decode reduction (8, 4, 2 or 1) that still covers a resize to `size`
    (`reduction_factor`, from the file's header); 1 for other formats."""
    found = header_size(path) if Path(path).suffix.lower() in JPEG_EXTENSIONS else None
    # An unreadable header decodes whole, for the decoder to report the problem.
    return 1 if found is None else reduction_factor(*found, size, keep_aspect)


def read_image(path: str | Path, reduction: int = 1) -> np.ndarray:
    """Decode an image as RGB uint8 (H, W, 3); grey and 16-bit files are converted.

    `reduction` 2, 4 or 8 decodes a JPEG at that fraction of its size (`read_for_resize`
    picks it): about 3x faster on multi-megapixel photographs.
    """
    # Stored pixel order, as PIL reads masks: OpenCV would apply a JPEG's EXIF rotation to
    # the image alone and misalign it with its mask.
    flag = _REDUCED_FLAGS.get(reduction, cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imread(str(path), flag)
    if img is None:
        if not Path(path).exists():
            raise DataError(f"image not found: {path}")
        raise DataError(f"cannot decode image: {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a mask as {0, 1} uint8 (H, W), whatever its encoding (see `binarize_mask`)."""
    try:
        with Image.open(path) as pil:
            if pil.mode in ("P", "PA"):
                # Palette masks by their colours, not their indices: a quantised 0/255 mask
                # can store white at index 0.
                pil = pil.convert("RGB")
            arr = np.asarray(pil)
    except FileNotFoundError:
        raise DataError(f"mask not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot decode mask: {path} ({exc})") from None
    return binarize_mask(arr)


def read_for_resize(
    path: str | Path, size: int, keep_aspect: bool = False, reduced: bool = True
) -> np.ndarray:
    """Decode an image as RGB at the most reduced JPEG scale that a resize to `size` allows
    (`reduced=False`: whole)."""
    return read_image(path, jpeg_reduction(path, size, keep_aspect) if reduced else 1)


# --------------------------------------------------------------------------------------
# Split CSVs
# --------------------------------------------------------------------------------------


def _csv_line(row_index: int) -> int:
    """Line number (1-based, header on line 1) of a data row, as an editor shows it."""
    return row_index + 2


def read_csv_checked(csv_path: str | Path, required: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV, failing clearly if it is missing, empty or lacks `required` columns."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"CSV not found: {csv_path}")
    try:
        df = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError:
        raise DataError(f"CSV is empty: {csv_path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse CSV {csv_path}: {exc}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"CSV {csv_path} lacks column(s) {missing}; it has {list(df.columns)} "
            f"(expected {list(required)})"
        )
    if len(df) == 0:
        raise DataError(f"CSV has a header but no rows: {csv_path}")
    return df


def resolve_path(value: str, csv_dir: Path) -> Path | None:
    """Find a CSV path entry: absolute as is; relative to the CSV's folder, then to the cwd."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    for candidate in (csv_dir / p, Path.cwd() / p):
        if candidate.exists():
            return candidate
    return None


def _raise_collected(problems: list[str], header: str) -> None:
    if not problems:
        return
    listed = problems[:_MAX_LISTED]
    more = len(problems) - len(listed)
    tail = f"\n  ... and {more} more" if more else ""
    raise DataError(f"{header} ({len(problems)} problem(s)):\n  " + "\n  ".join(listed) + tail)


def _resolve_column(df: pd.DataFrame, column: str, csv_path: Path) -> list[Path]:
    paths: list[Path] = []
    problems: list[str] = []
    for i, value in enumerate(df[column].tolist()):
        if not isinstance(value, str) or not value.strip():
            problems.append(f"line {_csv_line(i)}: empty {column}")
            continue
        resolved = resolve_path(value.strip(), csv_path.parent)
        if resolved is None:
            problems.append(f"line {_csv_line(i)}: {column} does not exist: {value}")
            continue
        paths.append(resolved)
    _raise_collected(problems, f"CSV {csv_path}")
    return paths


@dataclass(frozen=True)
class LabeledSplit:
    """Image/mask paths of a labeled split CSV (`image_path,mask_path`)."""

    csv_path: Path
    image_paths: list[Path]
    mask_paths: list[Path]

    def __len__(self) -> int:
        return len(self.image_paths)


def load_labeled_csv(csv_path: str | Path) -> LabeledSplit:
    """Read and check a labeled split CSV: every image and mask path must exist."""
    csv_path = Path(csv_path)
    df = read_csv_checked(csv_path, LABELED_COLUMNS)
    images = _resolve_column(df, "image_path", csv_path)
    masks = _resolve_column(df, "mask_path", csv_path)
    return LabeledSplit(csv_path, images, masks)


def load_unlabeled_csv(csv_path: str | Path) -> list[Path]:
    """Read and check an unlabeled CSV (`img_path`, or `image_path`; extra columns ignored)."""
    csv_path = Path(csv_path)
    df = read_csv_checked(csv_path)
    return _resolve_column(df, _unlabeled_column(df, csv_path), csv_path)


def _unlabeled_column(df: pd.DataFrame, csv_path: Path) -> str:
    column = next((c for c in UNLABELED_COLUMN_ALIASES if c in df.columns), None)
    if column is None:
        raise DataError(
            f"CSV {csv_path} lacks an image column: expected one of "
            f"{list(UNLABELED_COLUMN_ALIASES)}, it has {list(df.columns)}"
        )
    return column


def load_heldout_masks(csv_path: str | Path) -> LabeledSplit | None:
    """The images of an unlabeled CSV paired with its held-out `mask_path` column (every
    path checked), or None when it has no such column (diagnostics only, never training)."""
    csv_path = Path(csv_path)
    df = read_csv_checked(csv_path)
    if "mask_path" not in df.columns:
        return None
    images = _resolve_column(df, _unlabeled_column(df, csv_path), csv_path)
    return LabeledSplit(csv_path, images, _resolve_column(df, "mask_path", csv_path))


# --------------------------------------------------------------------------------------
# In-memory caches (uint8), decoded in parallel threads (cv2 and PIL release the GIL)
# --------------------------------------------------------------------------------------


def _parallel_map(fn: Callable, items: Sequence, num_threads: int, desc: str | None) -> list:
    num_threads = max(1, num_threads)
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        it = pool.map(fn, items)
        if desc is not None:
            it = tqdm(
                it,
                total=len(items),
                desc=desc,
                leave=False,
                dynamic_ncols=True,
                mininterval=0.1 if sys.stderr.isatty() else 30.0,
            )
        return list(it)


def load_labeled_arrays(
    split: LabeledSplit,
    image_size: int | None,
    num_threads: int = 4,
    desc: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every pair into uint8 arrays: images (N, S, S, 3) RGB, masks (N, S, S) {0, 1}.

    A mask whose size differs from its image is an error (naming both files): resizing
    them independently would silently misalign the label.
    """

    def load(i: int) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
        line = _csv_line(i)
        try:
            image = read_image(split.image_paths[i])
            mask = read_mask(split.mask_paths[i])
        except DataError as exc:
            return None, None, f"line {line}: {exc}"
        if image.shape[:2] != mask.shape:
            return (
                None,
                None,
                f"line {line}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
                f"size {image.shape[1]}x{image.shape[0]} ({split.mask_paths[i]} vs "
                f"{split.image_paths[i]})",
            )
        if image_size is not None:
            image, mask = resize_image(image, image_size), resize_nearest(mask, image_size)
        return image, mask, None

    results = _parallel_map(load, range(len(split)), num_threads, desc)
    _raise_collected([r[2] for r in results if r[2]], f"CSV {split.csv_path}")
    shapes = {r[0].shape for r in results}
    if len(shapes) > 1:
        raise DataError(
            f"CSV {split.csv_path}: images differ in size {sorted(shapes)[:3]}...; "
            "pass an image size to resize them to a common square"
        )
    images = np.stack([r[0] for r in results])
    masks = np.stack([r[1] for r in results])
    return images, masks


def load_image_array(
    paths: Sequence[Path],
    image_size: int,
    num_threads: int = 4,
    desc: str | None = None,
    csv_path: Path | None = None,
) -> np.ndarray:
    """Decode and resize images into one uint8 array (N, S, S, 3) (unlabeled sets)."""
    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)

    def load(i: int) -> str | None:
        try:
            out[i] = resize_image(read_for_resize(paths[i], image_size), image_size)
        except DataError as exc:
            return f"line {_csv_line(i)}: {exc}" if csv_path else str(exc)
        return None

    problems = [p for p in _parallel_map(load, range(len(paths)), num_threads, desc) if p]
    _raise_collected(problems, f"CSV {csv_path}" if csv_path else "images")
    return out
