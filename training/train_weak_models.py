"""Train the weak U-Net whose early checkpoints serve as a corruption source for g_phi
(docs/METHOD.md §2.5).

    python training/train_weak_models.py --train_csv train.csv \
        --output_dir ./checkpoints/weak_models/PH2 --image_size 224
    python data/weak_model_corruption.py ...     # the release's command: the same program

One U-Net with a ResNet18 encoder, random init, Dice loss, Adam lr 1e-3, batch 16, 20
epochs, flips and +-20 deg rotation; checkpoints kept at epochs 1, 3, 5, 10, 15, 20 as
`weak_model_epoch_{N}.pth` (the release's names) and listed in `weak_models.json`, which
`data.weak_model_corruption` reads. An interrupted run continues with --resume.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import Dataset

from data.augment import flip_rotate_pair, normalize_tensor
from data.io import load_labeled_arrays, load_labeled_csv
from data.samplers import sample_rng, split_index
from data.weak_model_corruption import (
    DEFAULT_SAVE_EPOCHS,
    MANIFEST,
    WEAK_FORMAT,
    build_weak_model,
    checkpoint_name,
)
from training.acceleration import add_speed_arguments, maybe_compile
from training.distributed import DistContext, resolve_device
from training.engine import Run, run_main, seed_everything, write_json
from training.loaders import prime_persistent, progress, sharded_loader
from training.precision import autocast, autocast_dtype, clip_and_step, make_grad_scaler


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
    resume: bool = False,
    mixed_precision: str = "auto",
    compile: str = "auto",
) -> list[Path]:
    """Train one weak U-Net and keep checkpoints at `save_epochs`; returns their paths."""
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
    ctx = DistContext(device=resolve_device(device))
    run = Run(ctx, output_dir.parent, output_dir.name, resume)
    seed_everything(seed)
    images, masks = load_labeled_arrays(
        load_labeled_csv(train_csv), image_size, desc="caching weak-model training set"
    )
    ds = _WeakTrainSet(images, masks, seed)
    loader, sampler = sharded_loader(ds, batch_size, num_workers, ctx, True, seed)
    model = build_weak_model(encoder).to(ctx.device, memory_format=torch.channels_last)
    forward = maybe_compile(model, compile, ctx.device, "weak U-Net")
    amp_dtype = autocast_dtype(mixed_precision, ctx.device)
    scaler = make_grad_scaler(ctx.device, amp_dtype)
    loss_fn = smp.losses.DiceLoss(mode="binary", from_logits=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # (the fp16 loss scale is not resumed: it re-calibrates within a few steps)
    components = {"model": model, "optimizer": optimizer}
    point = run.resume(**components)
    if point is not None:
        prime_persistent(loader)
    run.restore_rng(point)
    run.write_record(
        {
            "train_csv": str(train_csv),
            "image_size": image_size,
            "epochs": epochs,
            "save_epochs": list(save_epochs),
            "encoder": encoder,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "mixed_precision": mixed_precision,
        }
    )
    t0 = time.time()
    # Epochs count from 1 here, as the release's save epochs do.
    for epoch in run.epochs(point, 1, epochs + 1):
        sampler.set_epoch(epoch)
        model.train()
        running = 0.0
        bar = progress(loader, desc=f"weak model epoch {epoch}/{epochs}")
        for image, mask in bar:
            x = normalize_tensor(image.to(ctx.device, non_blocking=True))
            x = x.contiguous(memory_format=torch.channels_last)
            y = mask.to(ctx.device, non_blocking=True).float()
            with autocast(ctx.device, amp_dtype):
                logits = forward(x)
            loss = loss_fn(logits.float(), y)
            clip_and_step(loss, optimizer, scaler, model.parameters(), 0.0)
            running += loss.item()
            bar.set_postfix(dice_loss=f"{loss.item():.3f}", refresh=False)
        dice_loss = running / max(1, len(loader))
        print(f"weak model epoch {epoch}/{epochs}: dice loss {dice_loss:.4f}", flush=True)
        if epoch in save_epochs:
            run.save(
                {
                    "format": WEAK_FORMAT,
                    "encoder": encoder,
                    "image_size": image_size,
                    "epoch": epoch,
                    "state_dict": model.state_dict(),
                },
                checkpoint_name(epoch),
            )
        run.end_epoch(epoch, {"epoch": epoch, "dice_loss": dice_loss}, None, **components)
    saved = [run.dir / checkpoint_name(e) for e in sorted(save_epochs)]
    write_json(
        {
            "checkpoints": [p.name for p in saved],
            "train_csv": str(train_csv),
            "image_size": image_size,
            "epochs": epochs,
            "encoder": encoder,
            "seconds": round(time.time() - t0, 1),
        },
        run.dir / MANIFEST,
    )
    run.latest.unlink(missing_ok=True)  # only resuming needs it
    return saved


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train the weak U-Net whose checkpoints serve as a corruption source "
        "for g_phi (docs/METHOD.md §2.5).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument(
        "--train_csv", required=True, help="labeled training split (image_path,mask_path)"
    )
    p.add_argument("--output_dir", required=True, help="e.g. ./checkpoints/weak_models/PH2")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--epochs", "--max_epochs", type=int, default=20)
    p.add_argument("--save_epochs", type=int, nargs="+", default=list(DEFAULT_SAVE_EPOCHS))
    p.add_argument("--encoder", "--encoder_name", default="resnet18", help="smp encoder")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cuda or cpu")
    p.add_argument("--resume", action="store_true", help="continue from latest.pth")
    add_speed_arguments(p)
    return p


def main(argv: list[str] | None = None) -> list[Path]:
    a = build_parser().parse_args(argv)

    def train() -> list[Path]:
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
            a.resume,
            a.mixed_precision,
            a.compile,
        )
        print(f"saved {len(saved)} weak-model checkpoints to {a.output_dir}")
        return saved

    return run_main(train)


if __name__ == "__main__":
    main()
