"""Weak-model corruptions (SPEC.md Phase 1, "Weak-model corruptions").

Weak models are U-Nets with a ResNet18 encoder, trained from random weights with a Dice
loss (Adam lr 1e-3, batch 16, 20 epochs, flips and +-20 deg rotation); checkpoints are
kept at epochs 1, 3, 5, 10, 15, 20. Their thresholded predictions are realistic
"early network" masks: with probability p_weak a g_phi training sample takes the
prediction of a randomly drawn checkpoint instead of a synthetic corruption.

    python -m data.weak_model_corruption --train_csv train.csv \
        --output_dir ./checkpoints/weak_models/PH2 --image_size 224

Serving: the predictions of every checkpoint on every cached training image are computed
once when the g_phi training set is built (on the GPU when there is one) and stored
bit-packed; a sample then applies its joint flip/rotation to the stored prediction. This
equals predicting on the augmented image up to the network's (approximate) equivariance
to flips and small rotations, and keeps a 30 ms CPU forward pass out of every sample.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import Dataset

from data.augment import flip_rotate_pair, normalize_tensor
from data.io import load_labeled_arrays, load_labeled_csv
from data.samplers import EpochSampler, sample_rng, split_index

WEAK_FORMAT = "qgssl.weak_model"
MANIFEST = "weak_models.json"
DEFAULT_SAVE_EPOCHS = (1, 3, 5, 10, 15, 20)


def build_weak_model(encoder: str = "resnet18") -> torch.nn.Module:
    """U-Net with an smp encoder, random init (no pretrained weights, as in the paper)."""
    return smp.Unet(encoder_name=encoder, encoder_weights=None, classes=1)


class _WeakTrainSet(Dataset):
    """Cached pairs with flips and +-20 deg rotation (uint8 tensors, normalised on device)."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, seed: int) -> None:
        self.images, self.masks, self.seed = images, masks, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = split_index(idx, len(self))
        rng = sample_rng(self.seed, epoch, i)
        image, mask, _ = flip_rotate_pair(self.images[i], self.masks[i], rng)
        return torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask)[None]


def train_weak_models(
    train_csv: str | Path,
    output_dir: str | Path,
    image_size: int = 224,
    epochs: int = 20,
    save_epochs: tuple[int, ...] = DEFAULT_SAVE_EPOCHS,
    encoder: str = "resnet18",
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    num_workers: int = 2,
    device: str = "auto",
) -> list[Path]:
    """Train one weak U-Net and keep checkpoints at `save_epochs`; returns their paths."""
    from training.common import make_loader, progress, resolve_device, seed_everything

    bad = [e for e in save_epochs if not 1 <= e <= epochs]
    if bad:
        raise ValueError(f"--save_epochs {bad} outside 1..{epochs} (--epochs)")
    if image_size % 32:
        raise ValueError(f"--image_size must be a multiple of 32 for the U-Net, got {image_size}")
    output_dir = Path(output_dir)
    if (output_dir / MANIFEST).exists():
        raise FileExistsError(
            f"{output_dir} already holds weak models ({MANIFEST}); "
            "delete the folder to retrain them"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    dev = resolve_device(device)
    images, masks = load_labeled_arrays(
        load_labeled_csv(train_csv), image_size, desc="caching weak-model training set"
    )
    ds = _WeakTrainSet(images, masks, seed)
    sampler = EpochSampler(len(ds), shuffle=True, seed=seed)
    loader = make_loader(ds, sampler, batch_size, num_workers, dev, drop_last=len(ds) > batch_size)
    model = build_weak_model(encoder).to(dev)
    loss_fn = smp.losses.DiceLoss(mode="binary", from_logits=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    saved: list[Path] = []
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        model.train()
        running = 0.0
        bar = progress(loader, desc=f"weak model epoch {epoch}/{epochs}")
        for image, mask in bar:
            x = normalize_tensor(image.to(dev, non_blocking=True))
            y = mask.to(dev, non_blocking=True).float()
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
            bar.set_postfix(dice_loss=f"{loss.item():.3f}", refresh=False)
        print(
            f"weak model epoch {epoch}/{epochs}: dice loss {running / max(1, len(loader)):.4f}",
            flush=True,
        )
        if epoch in save_epochs:
            path = output_dir / f"weak_epoch_{epoch:03d}.pth"
            torch.save(
                {
                    "format": WEAK_FORMAT,
                    "encoder": encoder,
                    "image_size": image_size,
                    "epoch": epoch,
                    "state_dict": model.state_dict(),
                },
                path,
            )
            saved.append(path)
    manifest = {
        "checkpoints": [p.name for p in saved],
        "train_csv": str(train_csv),
        "image_size": image_size,
        "epochs": epochs,
        "encoder": encoder,
        "seconds": round(time.time() - t0, 1),
    }
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return saved


def load_weak_models(
    weak_dir: str | Path, device: torch.device | str = "cpu"
) -> list[tuple[int, torch.nn.Module]]:
    """(epoch, model) of every checkpoint listed in the folder's manifest, in eval mode."""
    weak_dir = Path(weak_dir)
    manifest_path = weak_dir / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"no weak models in {weak_dir} ({MANIFEST} missing); train them with "
            "`python -m data.weak_model_corruption` (train_mq.sh does) or set USE_WEAK_MODELS=false"
        )
    names = json.loads(manifest_path.read_text())["checkpoints"]
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
    manifest_path = weak_dir / MANIFEST
    if not manifest_path.is_file():
        return  # load_weak_models explains
    manifest = json.loads(manifest_path.read_text())
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
    from training.common import progress

    n, s = len(images), images.shape[1]
    check_weak_models_fit(weak_dir, s)
    models = load_weak_models(weak_dir, device)
    if s % 32:
        raise ValueError(f"weak models need an image size divisible by 32, got {s}")
    packed = np.empty((len(models), n, s, (s + 7) // 8), dtype=np.uint8)
    for m, (epoch, model) in enumerate(models):
        for start in progress(range(0, n, batch_size), desc=f"weak model {epoch} predictions"):
            batch = torch.from_numpy(images[start : start + batch_size]).to(device)
            x = normalize_tensor(batch.permute(0, 3, 1, 2))
            pred = (model(x)[:, 0] > 0).to(torch.uint8).cpu().numpy()  # sigmoid > 0.5
            packed[m, start : start + len(pred)] = np.packbits(pred, axis=-1)
    return packed, [e for e, _ in models]


def unpack_mask(packed_row: np.ndarray, size: int) -> np.ndarray:
    """One bit-packed (S, ceil(S / 8)) mask back to {0, 1} uint8 (S, S)."""
    return np.unpackbits(packed_row, axis=-1, count=size)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Train the weak U-Net models whose checkpoints "
        "serve as a corruption source for g_phi (SPEC.md Phase 1)."
    )
    p.add_argument(
        "--train_csv", required=True, help="labeled training split (image_path,mask_path)"
    )
    p.add_argument("--output_dir", required=True, help="e.g. ./checkpoints/weak_models/PH2")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--save_epochs", type=int, nargs="+", default=list(DEFAULT_SAVE_EPOCHS))
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cuda or cpu")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    saved = train_weak_models(
        a.train_csv,
        a.output_dir,
        a.image_size,
        a.epochs,
        tuple(a.save_epochs),
        a.encoder,
        a.batch_size,
        a.lr,
        a.seed,
        a.num_workers,
        a.device,
    )
    print(f"saved {len(saved)} weak-model checkpoints to {a.output_dir}")


if __name__ == "__main__":
    main()
