"""The g_phi data set D_Q = {(x_i, y~_ik, q_ik)} (docs/METHOD.md §2, §3.3).

Training: each image yields K samples per epoch, drawn on the fly. A sample applies the
joint spatial augmentation (flips, +-20 deg rotation) to the image and its GT, corrupts
the augmented GT (a VQM, or with probability p_weak a weak model's prediction), then
applies the image-only photometric augmentation. The target is Dice(GT, corrupted).

Validation and test: K fixed VQMs per image (5 by default), synthetic corruptions only,
no augmentation, drawn from generators seeded by (seed, index): the same on every epoch
and every run, so best-epoch selection and early stopping follow the model, not noise
(docs/METHOD.md §3.3).

Items are uint8 tensors, assembled into g_phi's 4-channel normalised input on the
training device by `quality_input` (timm's PrefetchLoader pattern: the loader moves 4x
fewer bytes and the GPU does the arithmetic). `normalize=True` gives the float 4-channel
tensor from the data set directly instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data.augment import PhotometricAugment, apply_spatial, normalize_tensor, sample_spatial
from data.io import load_labeled_arrays, load_labeled_csv
from data.samplers import sample_rng, split_index
from data.vqm_generator import (
    CATEGORIES,
    WEAK_MODEL_CATEGORY,
    VQMConfig,
    VQMGenerator,
    VQMSample,
    dice_score,
)
from data.weak_model_corruption import check_weak_models_fit, predict_weak_masks, unpack_mask

# Random streams of the fixed evaluation sets: sample i of split "val" draws from
# sample_rng(seed, EVAL_STREAMS["val"], i), so validation and test VQMs are independent
# draws (with one stream, test sample i would repeat validation sample i's category and op)
# and neither coincides with a training epoch's stream.
EVAL_STREAMS: dict[str, int] = {"val": 1 << 31, "test": (1 << 31) + 1}

# Integer ids of the sample categories (what a batch carries under "category").
CATEGORY_NAMES: tuple[str, ...] = (*CATEGORIES, WEAK_MODEL_CATEGORY)
CATEGORY_IDS: dict[str, int] = {c: i for i, c in enumerate(CATEGORY_NAMES)}


def quality_input(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """g_phi's input from a batch: uint8 images (B, 3, H, W) + masks (B, 1, H, W) ->
    ImageNet-normalised RGB (+) mask, float (B, 4, H, W), on the tensors' device."""
    return torch.cat([normalize_tensor(images), masks.float()], dim=1)


class MQDataset(Dataset):
    """(image, corrupted mask, quality) samples, K per image.

    Args:
        images: (N, S, S, 3) uint8 RGB cache.
        masks: (N, S, S) {0, 1} uint8 GT cache.
        samples_per_image: K.
        train: on-the-fly draws with augmentation (True) or fixed VQMs (False).
        seed: base seed of every per-sample generator.
        vqm_config: category mix and settings (the paper's by default).
        weak_masks, weak_epochs: bit-packed weak-model predictions and their epochs
            (`predict_weak_masks`), used with probability `weak_prob` (training only).
        photometric: image-only augmentation (training only; None disables it).
        normalize: return the normalised float 4-channel tensor under "input" instead of
            uint8 "image" and "mask".
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        samples_per_image: int,
        train: bool,
        seed: int = 0,
        vqm_config: VQMConfig | None = None,
        weak_masks: np.ndarray | None = None,
        weak_epochs: list[int] | None = None,
        weak_prob: float = 0.0,
        photometric: PhotometricAugment | None = None,
        max_rotation: float = 20.0,
        normalize: bool = False,
        eval_split: str = "val",
    ) -> None:
        if samples_per_image < 1:
            raise ValueError(f"samples per image (K) must be >= 1, got {samples_per_image}")
        if not 0.0 <= weak_prob <= 1.0:
            raise ValueError(f"weak-model probability must be in [0, 1], got {weak_prob}")
        if weak_prob > 0 and (weak_masks is None or not train):
            raise ValueError("weak-model corruptions need weak_masks and a training set")
        self.images = images
        self.masks = masks
        self.k = samples_per_image
        self.train = train
        self.seed = seed
        self.vqm_config = vqm_config or VQMConfig()
        self.generator = VQMGenerator(self.vqm_config, masks)
        self.weak_masks = weak_masks
        self.weak_epochs = weak_epochs or []
        self.weak_prob = weak_prob
        self.photometric = photometric if train else None
        self.max_rotation = max_rotation
        self.normalize = normalize
        self.size = images.shape[1]
        if eval_split not in EVAL_STREAMS:
            raise ValueError(f"eval_split must be one of {list(EVAL_STREAMS)}, got {eval_split!r}")
        self.eval_stream = EVAL_STREAMS[eval_split]

    # ----------------------------------------------------------------------------------
    # Construction from CSVs
    # ----------------------------------------------------------------------------------

    @classmethod
    def for_training(
        cls,
        csv_path: str | Path,
        image_size: int,
        samples_per_image: int = 50,
        seed: int = 0,
        vqm_config: VQMConfig | None = None,
        weak_model_dir: str | Path | None = None,
        weak_prob: float = 0.0,
        weak_device: torch.device | str = "cpu",
        photometric: PhotometricAugment | None = None,
        num_threads: int = 4,
        normalize: bool = False,
    ) -> MQDataset:
        """The on-the-fly training set of a split CSV (decoded and cached once)."""
        if weak_prob > 0:
            if weak_model_dir is None:
                raise ValueError("a weak-model probability > 0 needs a weak-model folder")
            check_weak_models_fit(weak_model_dir, image_size, csv_path)  # before decoding
        images, masks = load_labeled_arrays(
            load_labeled_csv(csv_path), image_size, num_threads, desc="caching g_phi train set"
        )
        weak_masks, weak_epochs = None, None
        if weak_prob > 0:
            weak_masks, weak_epochs = predict_weak_masks(weak_model_dir, images, weak_device)
        return cls(
            images,
            masks,
            samples_per_image,
            train=True,
            seed=seed,
            vqm_config=vqm_config,
            weak_masks=weak_masks,
            weak_epochs=weak_epochs,
            weak_prob=weak_prob,
            photometric=photometric if photometric is not None else PhotometricAugment(),
            normalize=normalize,
        )

    @classmethod
    def for_evaluation(
        cls,
        csv_path: str | Path,
        image_size: int,
        samples_per_image: int = 5,
        seed: int = 0,
        vqm_config: VQMConfig | None = None,
        num_threads: int = 4,
        normalize: bool = False,
        split: str = "val",
    ) -> MQDataset:
        """Fixed validation/test VQMs of a split CSV (the same for a given seed and
        `split`, "val" or "test", each with its own random stream)."""
        images, masks = load_labeled_arrays(
            load_labeled_csv(csv_path),
            image_size,
            num_threads,
            desc=f"caching {Path(csv_path).name}",
        )
        config = vqm_config or VQMConfig()
        if len(masks) < 2 and config.category_probs["cross_image"] > 0:
            raise ValueError(f"{csv_path}: cross-image VQMs need at least 2 images in the split")
        return cls(
            images,
            masks,
            samples_per_image,
            train=False,
            seed=seed,
            vqm_config=config,
            normalize=normalize,
            eval_split=split,
        )

    # ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.images) * self.k

    def draw(self, index: int) -> tuple[np.ndarray, VQMSample, int]:
        """The augmented image, its VQM sample and the image index for a sampler index."""
        epoch, i = split_index(index, len(self))
        if not self.train:
            epoch = self.eval_stream  # fixed evaluation VQMs: a pure function of (seed, i)
        img_idx = i // self.k
        rng = sample_rng(self.seed, epoch, i)
        image, gt = self.images[img_idx], self.masks[img_idx]
        params = None
        if self.train:
            params = sample_spatial(rng, max_degrees=self.max_rotation)
            image = apply_spatial(image, params, is_mask=False)
            gt = apply_spatial(gt, params, is_mask=True)
        if self.weak_prob > 0 and rng.random() < self.weak_prob:
            m = int(rng.integers(len(self.weak_epochs)))
            pred = unpack_mask(self.weak_masks[m, img_idx], self.size)
            pred = apply_spatial(pred, params, is_mask=True)
            sample = VQMSample(
                pred,
                dice_score(gt, pred),
                WEAK_MODEL_CATEGORY,
                f"weak_model:epoch{self.weak_epochs[m]}",
            )
        else:
            sample = self.generator.sample(gt, rng, index=img_idx)
        if self.photometric is not None:
            image = self.photometric(image, rng)
        return image, sample, img_idx

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image, sample, img_idx = self.draw(index)
        item: dict[str, torch.Tensor | int] = {
            "quality": torch.tensor(sample.quality, dtype=torch.float32),
            "category": CATEGORY_IDS[sample.category],
            "index": img_idx,  # image within the split
            "sample": split_index(index, len(self))[1],  # sample within the epoch
        }
        image_t = torch.from_numpy(image).permute(2, 0, 1)
        mask_t = torch.from_numpy(sample.mask)[None]
        if self.normalize:
            item["input"] = quality_input(image_t[None], mask_t[None])[0]
        else:
            item["image"] = image_t
            item["mask"] = mask_t
        return item
