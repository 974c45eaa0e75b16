"""Shared fixtures: tiny data sets written by the tests, and the real data when present."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests are small: one thread each keeps them fast and repeatable on a 2-core machine.
torch.set_num_threads(1)
cv2.setNumThreads(1)


def torchrun(script: str, args: list[str], nproc: int = 2, timeout: int = 900):
    """`torchrun --standalone --nproc_per_node N <repo>/<script> ARGS` (DDP over gloo on a
    CPU), the script run by path from the repository's parent folder, one thread each."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(nproc), str(REPO / script), *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        cmd, cwd=REPO.parent, env=env, capture_output=True, text=True, timeout=timeout
    )


def write_tiny_gphi(folder: Path, image_size: int) -> Path:
    """A tiny untrained g_phi (timm's test_resnet) saved as a Phase 1 checkpoint trained
    "at" `image_size` px: what Phase 2 loads, at a fraction of the cost."""
    from data.vqm_generator import VQMConfig
    from models.quality_predictor import (
        QualityPredictor,
        QualityPredictorConfig,
        quality_checkpoint,
    )

    torch.manual_seed(0)
    model = QualityPredictor(QualityPredictorConfig(backbone="test_resnet"))
    path = Path(folder) / "g_phi.pth"
    checkpoint = quality_checkpoint(model, image_size=image_size, vqm_config=VQMConfig().to_dict())
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> dict[str, Path]:
    """A tiny demo set (64 px): 12 train, 4 val, 4 test, 8 unlabeled images."""
    from prepare_datasets.make_demo_dataset import make_demo_dataset

    out = tmp_path_factory.mktemp("tiny_demo")
    return make_demo_dataset(
        out,
        image_size=64,
        num_train=12,
        num_val=4,
        num_test=4,
        num_unlabeled=8,
        seed=3,
        progress=False,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real CVC-ClinicDB, Kvasir-SEG, ISIC metadata), or skip."""
    if not (SHARED_DATA / "CVC-ClinicDB").is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (only on the dev machine)")
    return SHARED_DATA


def typical_mask(size: int = 128) -> np.ndarray:
    """An irregular lesion with a thin protrusion, a narrow notch and a second small
    component: every corruption op has something to act on."""
    m = np.zeros((size, size), np.uint8)
    s = size / 128
    cv2.ellipse(m, (int(60 * s), int(64 * s)), (int(34 * s), int(24 * s)), 20, 0, 360, 1, -1)
    cv2.line(m, (int(88 * s), int(60 * s)), (int(110 * s), int(40 * s)), 1, 1)  # protrusion
    cv2.line(m, (int(40 * s), int(64 * s)), (int(52 * s), int(64 * s)), 0, 1)  # notch
    cv2.circle(m, (int(20 * s), int(20 * s)), max(2, int(6 * s)), 1, -1)  # second component
    return m
