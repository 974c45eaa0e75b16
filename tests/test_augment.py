"""Shared augmentation: joint spatial alignment, noise in grey levels, normalisation."""

from __future__ import annotations

import math

import numpy as np
import torch

from data import augment as A
from tests.conftest import typical_mask


def test_joint_flip_rotate_keeps_image_and_mask_aligned():
    mask = typical_mask(64)
    image = np.dstack([mask * 255, np.zeros_like(mask), np.zeros_like(mask)])
    for seed in range(20):
        img, m, params = A.flip_rotate_pair(image, mask, np.random.default_rng(seed), p_rotate=1)
        assert params.angle != 0.0
        red = img[..., 0] > 127
        # Bilinear image vs nearest mask may differ along the boundary only.
        assert np.count_nonzero(red != m.astype(bool)) <= 0.15 * mask.sum()
        assert set(np.unique(m).tolist()) <= {0, 1}


def test_rotation_stays_within_twenty_degrees():
    angles = [A.sample_spatial(np.random.default_rng(s)).angle for s in range(500)]
    assert max(abs(a) for a in angles) <= 20.0
    assert 0.35 < np.mean([a != 0 for a in angles]) < 0.65  # p = 0.5


def test_gaussian_noise_is_in_grey_levels():
    """Noise std 2.2-5 grey levels (docs/METHOD.md §3.3), not the release's ~83 (§9)."""
    flat = np.full((128, 128, 3), 128, np.uint8)
    stds = [A.gaussian_noise(flat, np.random.default_rng(s)).astype(float).std() for s in range(50)]
    assert math.sqrt(5) - 0.3 <= min(stds) and max(stds) <= 5 + 0.3
    # The variance is what is drawn uniformly in [5, 25] (mean 15; a uniform std would
    # give a mean variance of 13.7).
    small = np.full((32, 32, 3), 128, np.uint8)
    variances = [
        A.gaussian_noise(small, np.random.default_rng(s)).astype(float).var() for s in range(2000)
    ]
    assert abs(np.mean(variances) - 15.0) < 0.6


def test_photometric_augment_changes_only_intensities():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    aug = A.PhotometricAugment(p_brightness_contrast=1, p_color_jitter=1, p_noise=1)
    out = aug(img, np.random.default_rng(1))
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    # Monotone intensity maps keep the ranking of grey levels (up to noise and hue).
    corr = np.corrcoef(out.astype(float).ravel(), img.astype(float).ravel())[0, 1]
    assert corr > 0.8


def test_normalisation_paths_agree():
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    a = torch.from_numpy(A.normalize_image(img))
    b = A.normalize_tensor(torch.from_numpy(img).permute(2, 0, 1)[None])[0]
    assert torch.allclose(a, b, atol=1e-5)
    white = A.normalize_tensor(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).flatten()
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(white, expected, atol=1e-5)
