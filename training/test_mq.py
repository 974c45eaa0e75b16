"""Evaluate a trained g_phi on fixed test VQMs (docs/METHOD.md §3.4).

    python -m training.test_mq --checkpoint ./checkpoints/mq/mq_PH2/best.pth --test_csv test.csv

The test VQMs are built with the checkpoint's own settings (image size, corruption mix,
size scaling: those g_phi was trained with, never other defaults) and a fixed seed,
VAL_SAMPLES (5) per test image, synthetic corruptions only. Reported, and written as JSON
next to the checkpoint (`test_metrics.json`):

- MAE, MSE, Pearson r and Spearman rho, and the MAE of the best constant predictor;
- a per-category breakdown (identity, single, chained, cross-image, ...);
- the image-dependence check: the same masks with the image blacked out (black pixels,
  i.e. zeros before normalisation: zeroed normalised channels would be a mean-grey image),
  and with the image of another test image; mean |difference| to the normal
  predictions, correlation with them, and MAE. A correlation above 0.9 with a blacked-out
  or foreign image means g_phi judges the mask alone and ignores the image: the check
  fails;
- a scatter plot of predicted vs true quality (`test_scatter.png`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by path

import numpy as np
import torch

from data.io import DataError
from data.mq_dataset import CATEGORY_NAMES, MQDataset, quality_input
from data.samplers import EpochSampler
from data.vqm_generator import VQMConfig
from models.quality_predictor import load_quality_predictor
from training.distributed import resolve_device
from training.engine import write_json
from training.loaders import make_loader, progress
from training.quality_metrics import finite_or_none, per_category, regression_metrics

# g_phi is judged to ignore the image when its predictions without the right image
# correlate with the normal ones at least this much (docs/METHOD.md §3.4).
IMAGE_DEPENDENCE_THRESHOLD = 0.9


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Evaluate g_phi on fixed test VQMs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="g_phi checkpoint (best.pth)")
    p.add_argument(
        "--test_csv",
        default=None,
        help="labeled test split CSV (default: the one train_mq.py recorded in the checkpoint)",
    )
    p.add_argument(
        "--val_samples",
        "--samples_per_image",  # the release's name
        type=int,
        default=5,
        help="fixed VQMs per test image",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the test VQMs (default: the checkpoint's training seed)",
    )
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--output_json",
        default=None,
        help="metrics file (default: test_metrics.json beside the checkpoint)",
    )
    p.add_argument(
        "--plot",
        default=None,
        help="scatter plot PNG (default: test_scatter.png beside the checkpoint)",
    )
    return p


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: MQDataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    seed: int,
) -> dict[str, np.ndarray]:
    """Predictions on the fixed VQMs with the right image, a black image and another
    image (a seeded derangement of the test images)."""
    n_images = len(dataset.images)
    rng = np.random.default_rng(seed)
    other = rng.permutation(n_images)
    fixed = other == np.arange(n_images)
    other[fixed] = (other[fixed] + 1) % n_images  # never an image with itself
    foreign_images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2)

    loader = make_loader(
        dataset, EpochSampler(len(dataset), shuffle=False), batch_size, num_workers, device
    )
    out: dict[str, list[np.ndarray]] = {
        k: [] for k in ("pred", "blackout", "shuffled", "true", "category")
    }
    for batch in progress(loader, desc="test"):
        images = batch["image"].to(device)
        masks = batch["mask"].to(device)
        foreign = foreign_images[other[batch["index"].numpy()]].to(device)
        out["pred"].append(model(quality_input(images, masks)).cpu().numpy())
        out["blackout"].append(model(quality_input(torch.zeros_like(images), masks)).cpu().numpy())
        out["shuffled"].append(model(quality_input(foreign, masks)).cpu().numpy())
        out["true"].append(batch["quality"].numpy())
        out["category"].append(np.asarray(batch["category"]))
    return {k: np.concatenate(v) for k, v in out.items()}


def image_dependence(pred: np.ndarray, variant: np.ndarray, true: np.ndarray) -> dict:
    corr = float(np.corrcoef(pred, variant)[0, 1]) if np.ptp(variant) > 0 else float("nan")
    return {
        "mean_abs_diff": float(np.mean(np.abs(variant - pred))),
        "correlation_with_normal": corr,
        "mae": float(np.mean(np.abs(variant - true))),
    }


def scatter_plot(
    pred: np.ndarray,
    true: np.ndarray,
    categories: np.ndarray,
    metrics: dict,
    path: Path,
) -> None:
    """Predicted vs true quality, one colour per VQM category, the identity line and the
    metrics in the title (matplotlib, off-screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for cid in np.unique(categories):
        keep = categories == cid
        ax.scatter(true[keep], np.clip(pred[keep], 0, 1), s=9, alpha=0.7,
                   label=CATEGORY_NAMES[int(cid)])  # fmt: skip
    ax.plot([0, 1], [0, 1], color="0.5", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="true quality (Dice)", ylabel="predicted quality")
    ax.set_title(
        f"n={metrics['n']}  MAE={metrics['mae']:.3f}  Pearson={metrics['pearson']:.3f}  "
        f"Spearman={metrics['spearman']:.3f}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise OSError(f"could not write {path}: {exc}") from None
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    model, ckpt = load_quality_predictor(args.checkpoint, map_location=device)
    seed = ckpt.get("seed", 42) if args.seed is None else args.seed
    config = VQMConfig.from_dict(ckpt["vqm_config"])
    image_size = int(ckpt["image_size"])
    if args.test_csv is None:
        args.test_csv = ckpt.get("test_csv")
        if not args.test_csv:
            raise ValueError(
                f"{args.checkpoint} records no test split (trained without --test_csv): pass "
                "--test_csv"
            )
    dataset = MQDataset.for_evaluation(
        args.test_csv, image_size, args.val_samples, seed=seed, vqm_config=config, split="test"
    )
    r = evaluate(model, dataset, args.batch_size, args.num_workers, device, seed)
    metrics = regression_metrics(r["pred"], r["true"])
    blackout = image_dependence(r["pred"], r["blackout"], r["true"])
    shuffled = image_dependence(r["pred"], r["shuffled"], r["true"])
    corrs = [blackout["correlation_with_normal"], shuffled["correlation_with_normal"]]
    # NaN (constant predictions without the image) counts as not ignoring the image only
    # if the normal predictions vary; a constant g_phi fails below anyway via Pearson.
    passed = all(not (c >= IMAGE_DEPENDENCE_THRESHOLD) for c in corrs)
    ckpt_dir = Path(args.checkpoint).parent
    result = {
        **metrics,
        "per_category": per_category(r["pred"], r["true"], r["category"], CATEGORY_NAMES),
        "image_dependence": {
            "blackout": blackout,
            "shuffled": shuffled,
            "threshold": IMAGE_DEPENDENCE_THRESHOLD,
            "passed": bool(passed),
        },
        "checkpoint": str(args.checkpoint),
        "test_csv": str(args.test_csv),
        "settings": {
            "image_size": image_size,
            "samples_per_image": args.val_samples,
            "seed": seed,
            "vqm_config": config.to_dict(),
            "backbone": ckpt["model_config"]["backbone"],
            "checkpoint_epoch": ckpt.get("epoch"),
        },
    }
    json_path = Path(args.output_json) if args.output_json else ckpt_dir / "test_metrics.json"
    plot_path = Path(args.plot) if args.plot else ckpt_dir / "test_scatter.png"
    write_json(finite_or_none(result), json_path)
    scatter_plot(r["pred"], r["true"], r["category"], metrics, plot_path)

    print(
        f"g_phi {result['settings']['backbone']} on {metrics['n']} fixed test VQMs "
        f"({len(dataset.images)} images x {args.val_samples}, seed {seed}):"
    )
    print(
        f"  MAE {metrics['mae']:.4f}  MSE {metrics['mse']:.4f}  Pearson {metrics['pearson']:.4f}"
        f"  Spearman {metrics['spearman']:.4f}  (best constant MAE "
        f"{metrics['best_constant_mae']:.4f})"
    )
    print("  per category:  n   true  pred   MAE")
    for name, c in result["per_category"].items():
        print(
            f"    {name:13s}{c['n']:5d}  {c['mean_true']:.3f} {c['mean_pred']:.3f} {c['mae']:.3f}"
        )
    for name, d in (("blacked-out image", blackout), ("another image", shuffled)):
        print(
            f"  {name:18s}: mean |diff| {d['mean_abs_diff']:.4f}, correlation with normal "
            f"{d['correlation_with_normal']:.3f}, MAE {d['mae']:.4f}"
        )
    verdict = "PASSED" if passed else "FAILED (g_phi ignores the image)"
    print(f"  image-dependence check (correlation < {IMAGE_DEPENDENCE_THRESHOLD}): {verdict}")
    print(f"  wrote {json_path} and {plot_path}")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (DataError, FileNotFoundError, ValueError) as exc:
        # Bad input (named in the message): no traceback needed.
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
