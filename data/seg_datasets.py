"""Labeled and unlabeled segmentation data sets of Phase 2 (docs/METHOD.md §4.2, §4.5).

Images are decoded once into in-memory uint8 caches (data.io; a 5,000-image unlabeled set
at 224 px is 750 MB, shared copy-on-write by forked loader workers), so that loading never
starves a GPU. Items are uint8 tensors; the training loop normalises them on its device
(`data.augment.normalize_tensor`), which moves 4x fewer bytes through collate and pinning.

- Labeled training view: flips, +-20 deg rotation (joint with the mask, p 0.5) and
  brightness/contrast (p 0.5) of the image.
- Unlabeled weak view: flips only (teacher and student see the same view). With
  `strong_views=S` (FixMatch 1, UniMatch 2) an item also holds S strong views (the weak
  view's geometry, then `StrongAugment`'s photometric step) and S CutMix boxes, each view
  and box drawn independently (docs/METHOD.md §7.6).
- Validation and test (augment=False): the cached arrays, no randomness.

Per-sample randomness comes from `data.samplers.sample_rng(seed, epoch, index)`; the epoch is
encoded in the index by `data.samplers.EpochSampler` (`epoch * n + i`), so an augmentation
is a pure function of (seed, epoch, index) whatever the number of workers. A plain index in
[0, n) means epoch 0, so a plain DataLoader works too.

Items: labeled {"image": uint8 (3, H, W) RGB, "mask": uint8 (1, H, W) in {0, 1},
"index": int}; unlabeled {"image": uint8 (3, H, W), "index": int}, with strong views
also "strong": uint8 (S, 3, H, W) and "box": uint8 (S, H, W) in {0, 1}.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from data.augment import (
    CutMixBox,
    StrongAugment,
    brightness_contrast,
    flip_rotate_pair,
    random_flips,
)
from data.io import load_image_array, load_labeled_arrays, load_labeled_csv, load_unlabeled_csv
from data.samplers import sample_rng, split_index


def _chw_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> contiguous (3, H, W) uint8 tensor owning its memory.

    cv2.split is about 2x faster than a numpy transpose copy, and a contiguous item makes
    collate a plain memcpy (stacking permuted views costs about 40 us per 224 px item). The
    copy also means an item never aliases the cache.
    """
    return torch.from_numpy(np.stack(cv2.split(image)))


def _check_images(images: np.ndarray, name: str) -> None:
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8):
        raise TypeError(f"{name} must be a uint8 numpy array, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[3] != 3 or len(images) == 0:
        raise ValueError(f"{name} must be a non-empty (N, H, W, 3) array, got {images.shape}")


def _decode_index(index: int, length: int, name: str) -> tuple[int, int]:
    """(epoch, image index) of a sampler index; negative indices are a caller bug."""
    index = int(index)
    if index < 0:
        raise IndexError(f"{name}: index must be >= 0 (epoch * {length} + i), got {index}")
    return split_index(index, length)


class _CachedSegDataset(Dataset):
    """What both data sets share: the uint8 cache of a CSV's images, decoded once at
    image_size x image_size (or given as arrays, `from_arrays`), and items by sampler index.

    Subclasses define `_decode` (CSV -> cache arrays) and `_setup` (arrays and settings ->
    the data set), which both constructors end in.
    """

    images: np.ndarray

    def __init__(
        self,
        csv_path: str | Path,
        image_size: int,
        augment: bool,
        seed: int = 0,
        num_threads: int = 4,
        **settings,
    ) -> None:
        """`settings`: the subclass's own augmentation settings (keywords of `_setup`)."""
        if int(image_size) <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        csv_path = Path(csv_path)
        arrays = self._decode(csv_path, int(image_size), num_threads, f"caching {csv_path.name}")
        self._setup(*arrays, augment, seed, **settings)

    def __len__(self) -> int:
        return len(self.images)

    def _locate(self, index: int) -> tuple[int, int]:
        """(epoch, image index) of a sampler index."""
        return _decode_index(index, len(self), type(self).__name__)


class LabeledSegDataset(_CachedSegDataset):
    """(image, mask) pairs of a split CSV (`image_path,mask_path`), resized to
    image_size x image_size (masks nearest) and cached as uint8.

    `LabeledSegDataset(csv_path, image_size, augment, seed=0, num_threads=4, *,
    max_rotation=20.0, p_brightness_contrast=0.5)`: rotation range (degrees) and the
    probability of the brightness/contrast step of the training view.
    """

    @staticmethod
    def _decode(
        csv_path: Path, image_size: int, num_threads: int, desc: str
    ) -> tuple[np.ndarray, np.ndarray]:
        return load_labeled_arrays(load_labeled_csv(csv_path), image_size, num_threads, desc=desc)

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        masks: np.ndarray,
        augment: bool,
        seed: int = 0,
        max_rotation: float = 20.0,
        p_brightness_contrast: float = 0.5,
    ) -> LabeledSegDataset:
        """A data set over in-memory arrays: images (N, H, W, 3) uint8, masks (N, H, W)
        uint8 in {0, 1} (benchmarks, tests, callers with their own decoding)."""
        self = cls.__new__(cls)
        self._setup(images, masks, augment, seed, max_rotation, p_brightness_contrast)
        return self

    def _setup(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        augment: bool,
        seed: int,
        max_rotation: float = 20.0,
        p_brightness_contrast: float = 0.5,
    ) -> None:
        _check_images(images, "images")
        if not (isinstance(masks, np.ndarray) and masks.dtype == np.uint8):
            raise TypeError(f"masks must be a uint8 numpy array, got {type(masks).__name__}")
        if masks.shape != images.shape[:3]:
            raise ValueError(f"masks must be {images.shape[:3]} to match images, got {masks.shape}")
        if not 0.0 <= p_brightness_contrast <= 1.0:
            raise ValueError(
                f"p_brightness_contrast must be in [0, 1], got {p_brightness_contrast}"
            )
        self.images, self.masks = images, masks
        self.augment, self.seed = bool(augment), int(seed)
        self.max_rotation, self.p_brightness_contrast = float(max_rotation), p_brightness_contrast

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        epoch, i = self._locate(index)
        image, mask = self.images[i], self.masks[i]
        if self.augment:
            rng = sample_rng(self.seed, epoch, i)
            # Spatial first (jointly, mask nearest), then the image-only photometric step.
            image, mask, _ = flip_rotate_pair(image, mask, rng, max_degrees=self.max_rotation)
            if rng.random() < self.p_brightness_contrast:
                image = brightness_contrast(image, rng)
        else:
            mask = mask.copy()  # never hand out a view of the cache
        return {"image": _chw_tensor(image), "mask": torch.from_numpy(mask)[None], "index": i}


class UnlabeledSegDataset(_CachedSegDataset):
    """Images of an unlabeled CSV: `img_path` (the release's colonoscopy CSV, or its ISIC
    subset CSVs with their metadata columns) or `image_path`, resized and cached as uint8.

    `UnlabeledSegDataset(csv_path, image_size, augment, seed=0, num_threads=4, *,
    strong_views=0)`: the number of strong views (and CutMix boxes) per item.
    """

    @staticmethod
    def _decode(csv_path: Path, image_size: int, num_threads: int, desc: str) -> tuple[np.ndarray]:
        paths = load_unlabeled_csv(csv_path)
        return (load_image_array(paths, image_size, num_threads, desc=desc, csv_path=csv_path),)

    @classmethod
    def from_arrays(
        cls, images: np.ndarray, augment: bool, seed: int = 0, strong_views: int = 0
    ) -> UnlabeledSegDataset:
        """A data set over an in-memory (N, H, W, 3) uint8 array."""
        self = cls.__new__(cls)
        self._setup(images, augment, seed, strong_views)
        return self

    def _setup(
        self,
        images: np.ndarray,
        augment: bool,
        seed: int,
        strong_views: int = 0,
        strong: StrongAugment = StrongAugment(),  # noqa: B008 - frozen, shared safely
        cutmix: CutMixBox = CutMixBox(),  # noqa: B008
    ) -> None:
        _check_images(images, "images")
        if strong_views < 0 or (strong_views and not augment):
            raise ValueError(f"strong_views must be >= 0 and needs augment, got {strong_views}")
        self.images, self.augment, self.seed = images, bool(augment), int(seed)
        self.strong_views, self.strong, self.cutmix = int(strong_views), strong, cutmix

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        epoch, i = self._locate(index)
        image = self.images[i]
        if not self.augment:
            return {"image": _chw_tensor(image), "index": i}
        rng = sample_rng(self.seed, epoch, i)
        image = random_flips(image, rng)
        item: dict[str, torch.Tensor | int] = {"image": _chw_tensor(image), "index": i}
        if self.strong_views:
            # Drawn after the weak view, so the weak view is the same with or without them.
            h, w = image.shape[:2]
            views = [_chw_tensor(self.strong(image, rng)) for _ in range(self.strong_views)]
            boxes = [self.cutmix(rng, h, w) for _ in range(self.strong_views)]
            item["strong"] = torch.stack(views)
            item["box"] = torch.from_numpy(np.stack(boxes))
        return item
