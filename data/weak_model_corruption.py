"""Weak-model corruptions (docs/METHOD.md §2.5): the corruption source, not its training.

With probability p_weak a g_phi training sample takes the thresholded prediction of a
randomly drawn early checkpoint of a weak U-Net (trained by `training/train_weak_models.py`)
instead of a synthetic corruption: realistic "early network" masks.

Serving: the predictions of every checkpoint on every cached training image are computed
once when the g_phi training set is built (on the GPU when there is one) and stored
bit-packed; a sample then applies its joint flip/rotation to the stored prediction. This
equals predicting on the augmented image up to the network's (approximate) equivariance
to flips and small rotations, and keeps a 30 ms CPU forward pass out of every sample.

    python data/weak_model_corruption.py --train_csv train.csv --output_dir DIR ...
runs the weak-model training, as the release's train_mq.sh calls it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import numpy as np
import segmentation_models_pytorch as smp
import torch
from tqdm import tqdm

from data.augment import normalize_tensor

WEAK_FORMAT = "qgssl.weak_model"
MANIFEST = "weak_models.json"
DEFAULT_SAVE_EPOCHS = (1, 3, 5, 10, 15, 20)


def build_weak_model(encoder: str = "resnet18") -> torch.nn.Module:
    """U-Net with an smp encoder, random init (no pretrained weights, as in the paper)."""
    return smp.Unet(encoder_name=encoder, encoder_weights=None, classes=1)


def checkpoint_name(epoch: int) -> str:
    """The file of the checkpoint kept after `epoch` (the release's name)."""
    return f"weak_model_epoch_{epoch}.pth"


def read_manifest(weak_dir: str | Path) -> dict:
    """The folder's weak_models.json: checkpoint names, training split, image size."""
    manifest_path = Path(weak_dir) / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"no weak models in {weak_dir} ({MANIFEST} missing); train them with "
            "`python training/train_weak_models.py` (train_mq.sh does) or set "
            "USE_WEAK_MODELS=false"
        )
    return json.loads(manifest_path.read_text())


def load_weak_models(
    weak_dir: str | Path, device: torch.device | str = "cpu"
) -> list[tuple[int, torch.nn.Module]]:
    """(epoch, model) of every checkpoint listed in the folder's manifest, in eval mode."""
    weak_dir = Path(weak_dir)
    names = read_manifest(weak_dir)["checkpoints"]
    models = []
    for name in names:
        ckpt = torch.load(weak_dir / name, map_location="cpu", weights_only=True)
        if ckpt.get("format") != WEAK_FORMAT:
            raise ValueError(f"{weak_dir / name} is not a weak-model checkpoint")
        model = build_weak_model(ckpt["encoder"])
        model.load_state_dict(ckpt["state_dict"])
        models.append((int(ckpt["epoch"]), model.to(device).eval()))
    return models


def check_weak_models_fit(
    weak_dir: str | Path, image_size: int, train_csv: str | Path | None = None
) -> None:
    """Refuse weak models trained at another image size or on another split than the g_phi
    run that would use them (train_mq.sh trains them only when their folder is absent, so a
    changed IMAGE_SIZE or TRAIN_CSV would otherwise reuse stale ones silently)."""
    weak_dir = Path(weak_dir)
    if not (weak_dir / MANIFEST).is_file():
        return  # load_weak_models explains
    manifest = read_manifest(weak_dir)
    fix = f"delete {weak_dir} (train_mq.sh then retrains them) or set WEAK_MODEL_DIR"
    if int(manifest["image_size"]) != image_size:
        raise ValueError(
            f"the weak models in {weak_dir} were trained at {manifest['image_size']} px, but "
            f"g_phi trains at {image_size} px: {fix}"
        )
    if train_csv is not None:
        theirs = Path(manifest["train_csv"]).resolve()
        if theirs != Path(train_csv).resolve():
            raise ValueError(
                f"the weak models in {weak_dir} were trained on {manifest['train_csv']}, but "
                f"g_phi trains on {train_csv}: {fix}"
            )


@torch.no_grad()
def predict_weak_masks(
    weak_dir: str | Path,
    images: np.ndarray,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
) -> tuple[np.ndarray, list[int]]:
    """Thresholded predictions of every checkpoint on `images` (N, S, S, 3) uint8.

    Returns (bit-packed masks (M, N, S, ceil(S / 8)) uint8, checkpoint epochs). Unpack one
    with `unpack_mask`.
    """
    n, s = len(images), images.shape[1]
    check_weak_models_fit(weak_dir, s)
    models = load_weak_models(weak_dir, device)
    if s % 32:
        raise ValueError(f"weak models need an image size divisible by 32, got {s}")
    packed = np.empty((len(models), n, s, (s + 7) // 8), dtype=np.uint8)
    for m, (epoch, model) in enumerate(models):
        batches = range(0, n, batch_size)
        for start in tqdm(batches, desc=f"weak model {epoch} predictions", leave=False):
            batch = torch.from_numpy(images[start : start + batch_size]).to(device)
            x = normalize_tensor(batch.permute(0, 3, 1, 2))
            pred = (model(x)[:, 0] > 0).to(torch.uint8).cpu().numpy()  # sigmoid > 0.5
            packed[m, start : start + len(pred)] = np.packbits(pred, axis=-1)
    return packed, [e for e, _ in models]


def unpack_mask(packed_row: np.ndarray, size: int) -> np.ndarray:
    """One bit-packed (S, ceil(S / 8)) mask back to {0, 1} uint8 (S, S)."""
    return np.unpackbits(packed_row, axis=-1, count=size)


if __name__ == "__main__":
    # The release's command for the weak-model training; it lives in training/.
    from training.train_weak_models import main

    main()
