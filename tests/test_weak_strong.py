"""FixMatch, UniMatch and their quality variants (docs/METHOD.md §7.6): strong views and
CutMix boxes, targets that move with the pasted pixels, the feature-perturbed stream on
every architecture, the confident-pixel Dice, and -QW at uniform weights = its base."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch import nn

from data.augment import CutMixBox, StrongAugment
from data.seg_datasets import UnlabeledSegDataset
from models.attention_unet import AttentionUNet
from models.seg_models import create_seg_model
from models.swin_unet import SwinUNet
from training.losses import masked_dice_loss
from training.methods.base import METHODS, Batch, FeatureNet, StepInfo
from training.methods.fixmatch import cutmix, partner_index

SIZE = 32
ACTIVE = StepInfo(step=0, epoch=5.0, lam=1.0, ramp=1.0)


def images(n: int = 6, size: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------
# Strong views and CutMix boxes (data/)
# --------------------------------------------------------------------------------------


def test_strong_views_differ_from_the_weak_view_and_replay_from_their_seed():
    arr = images()
    ds = UnlabeledSegDataset.from_arrays(arr, augment=True, seed=3, strong_views=2)
    item = ds[6 * 2 + 4]  # epoch 2, image 4
    assert item["strong"].shape == (2, 3, 48, 48) and item["strong"].dtype == torch.uint8
    assert item["box"].shape == (2, 48, 48) and set(item["box"].unique().tolist()) <= {0, 1}
    again = UnlabeledSegDataset.from_arrays(arr, augment=True, seed=3, strong_views=2)[16]
    for key in ("image", "strong", "box"):
        assert torch.equal(item[key], again[key]), key
    # The weak view is the one a method without strong views gets.
    plain = UnlabeledSegDataset.from_arrays(arr, augment=True, seed=3)[16]
    assert torch.equal(item["image"], plain["image"]) and "strong" not in plain
    # Strong views: photometric changes of the weak view, independent of each other.
    views = [ds[6 * e + i]["strong"] for e in range(3) for i in range(6)]
    weak = [ds[6 * e + i]["image"] for e in range(3) for i in range(6)]
    assert sum(not torch.equal(v[0], w) for v, w in zip(views, weak)) >= 14
    assert sum(not torch.equal(v[0], v[1]) for v in views) >= 14
    other_seed = UnlabeledSegDataset.from_arrays(arr, augment=True, seed=4, strong_views=2)[16]
    assert not torch.equal(item["strong"], other_seed["strong"])


def test_strong_augment_keeps_the_geometry():
    """Colour, greyscale and blur only: a sharp edge stays where it was."""
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, 20:] = 200
    for seed in range(20):
        out = StrongAugment()(img.copy(), np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        left, right = out[:, :16].astype(float).mean(), out[:, 24:].astype(float).mean()
        assert right > left


def test_cutmix_boxes_have_the_documented_sizes():
    draw = CutMixBox()
    boxes = [draw(np.random.default_rng(s), 64, 48) for s in range(400)]
    present = [b for b in boxes if b.any()]
    assert 150 < len(present) < 250  # p 0.5
    for b in present:
        ys, xs = np.nonzero(b)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert b.sum() == h * w  # one rectangle, inside the image
        # int() truncation of sqrt(area * r) and sqrt(area / r) loses a little area
        assert 0.01 < b.mean() <= 0.4 + 1e-9
        assert 0.2 < h / w < 4.5
    assert not any(CutMixBox(p=0.0)(np.random.default_rng(s), 8, 8).any() for s in range(20))


# --------------------------------------------------------------------------------------
# CutMix moves targets with pixels
# --------------------------------------------------------------------------------------


class PixelNet(nn.Module):
    """A 'network' whose logit at a pixel is 20 x the pixel's first channel: it labels a
    pasted pixel exactly as the image it came from, so targets that move with the pixels
    give a loss of ~0 and targets left behind do not."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x, features=False, perturb=None, p=0.5):
        logits = self.scale * x[:, :1]
        return (logits, logits[perturb:]) if perturb is not None else logits


def pixel_batch(strong_views: int = 1) -> Batch:
    g = torch.Generator().manual_seed(0)
    x_u = torch.sign(torch.randn(4, 3, SIZE, SIZE, generator=g))
    box = torch.zeros(4, 1, SIZE, SIZE)
    box[:, :, 4:20, 8:24] = 1.0
    x_l = torch.sign(torch.randn(2, 3, SIZE, SIZE, generator=g))
    y_l = (x_l[:, :1] > 0).float()
    return Batch(x_l, y_l, x_u, (x_u,) * strong_views, (box,) * strong_views)


def method_args(cls, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cls.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cutmix_pastes_the_partner_into_the_box_for_images_labels_and_weights():
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 8, 8)
    box = torch.zeros(4, 1, 8, 8)
    box[:, :, 2:5, 3:7] = 1
    partner = partner_index(4, x.device)
    assert partner.tolist() == [1, 2, 3, 0]
    for t in (x, x[:, :1]):  # a 3-channel image and a 1-channel label map alike
        mixed = cutmix(t, box, partner)
        inside = box.bool().expand_as(t)
        assert torch.equal(mixed[inside], t[partner][inside])
        assert torch.equal(mixed[~inside], t[~inside])


@pytest.mark.parametrize("name", ["fixmatch", "unimatch"])
def test_pseudo_labels_and_confidence_move_with_the_pasted_pixels(name):
    cls = METHODS[name]
    method = cls(method_args(cls), [PixelNet()])
    batch = pixel_batch(cls.strong_views)
    _, logs = method.train_step(batch, ACTIVE)
    assert float(logs["loss_unsup"]) < 1e-4  # labels followed their pixels
    assert float(logs["kept_pixel_fraction"]) == 1.0
    # The control: the pasted image with the labels left in place.
    probs = torch.sigmoid(20 * cutmix(batch.x_u, batch.boxes[0], partner_index(4, "cpu"))[:, :1])
    left_behind = masked_dice_loss(probs, (batch.x_u[:, :1] > 0).float(), torch.ones_like(probs))
    assert float(left_behind) > 0.1


def test_confidence_below_the_threshold_is_ignored():
    cls = METHODS["fixmatch"]
    net = PixelNet()
    with torch.no_grad():
        net.scale.fill_(2.0)  # sigmoid(2) = 0.88 < 0.95: nothing is confident
    _, logs = cls(method_args(cls), [net]).train_step(pixel_batch(), ACTIVE)
    assert float(logs["kept_pixel_fraction"]) == 0.0 and float(logs["loss_unsup"]) == 0.0
    _, logs = cls(method_args(cls, "--confidence_threshold", "0.8"), [net]).train_step(
        pixel_batch(), ACTIVE
    )
    assert float(logs["kept_pixel_fraction"]) == 1.0


# --------------------------------------------------------------------------------------
# The confident-pixel Dice
# --------------------------------------------------------------------------------------


def test_masked_dice_is_unimatchs_two_class_softmax_dice():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 8, 8, generator=g, requires_grad=True)
    target = (torch.rand(3, 1, 8, 8, generator=g) > 0.5).float()
    keep = (torch.rand(3, 1, 8, 8, generator=g) > 0.3).float()
    # UniMatch's DiceLoss on softmax([0, z]) with one-hot targets, ignoring keep == 0.
    score = torch.softmax(torch.cat([torch.zeros_like(logits), logits], 1), 1)
    onehot = torch.cat([1 - target, target], 1)
    expected = 0.0
    for c in range(2):
        s, t = score[:, c][keep[:, 0] == 1], onehot[:, c][keep[:, 0] == 1]
        expected += 1 - (2 * (s * t).sum() + 1e-5) / ((s * s).sum() + (t * t).sum() + 1e-5)
    got = masked_dice_loss(torch.sigmoid(logits), target, keep)
    assert torch.allclose(got, expected / 2, atol=1e-6)
    assert float(masked_dice_loss(target, target, keep)) == pytest.approx(0.0, abs=1e-6)
    none = masked_dice_loss(torch.sigmoid(logits), target, torch.zeros_like(keep))
    none.backward()
    assert float(none.detach()) == 0.0 and torch.all(logits.grad == 0)


# --------------------------------------------------------------------------------------
# UniMatch's feature perturbation on every architecture
# --------------------------------------------------------------------------------------


def networks() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "unetpp": create_seg_model(
            "unetpp", encoder="tu-test_resnet", encoder_weights=None, image_size=SIZE,
            decoder_channels=(16, 8, 8, 8, 8),
        ),
        "attentionunet": AttentionUNet("resnet18", None, decoder_channels=(16, 8, 8, 8, 8)),
        "swinunet": SwinUNet(
            image_size=64, embed_dim=12, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
            decoder_depths=(1, 1, 1, 1),
        ),
    }  # fmt: skip


@pytest.mark.parametrize("arch", ["unetpp", "attentionunet", "swinunet"])
def test_feature_perturbation_changes_the_output_only_in_training_mode(arch):
    net = FeatureNet(networks()[arch])
    size = 64 if arch == "swinunet" else SIZE
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    net.eval()
    with torch.no_grad():
        clean, fp = net(x, perturb=1)
        assert clean.shape == (4, 1, size, size) and fp.shape == (3, 1, size, size)
        assert torch.allclose(clean, net(x), atol=1e-5)
        assert torch.allclose(fp, clean[1:], atol=1e-5)
    net.train()
    torch.manual_seed(1)
    clean, fp = net(x, perturb=1)
    assert (fp - clean[1:]).abs().mean() > 1e-3
    (clean.mean() + fp.mean()).backward()  # one graph through the network's own forward
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------
# Quality variants
# --------------------------------------------------------------------------------------


class ConstantQuality:
    """A g_phi stand-in that rates every mask `q` (uniform weights)."""

    def __init__(self, q: float) -> None:
        self.q = q

    def __call__(self, images, masks, grad=False, hard=None):
        return torch.full((len(images),), self.q) + 0.0 * masks.flatten(1).mean(1)


def tiny_net() -> FeatureNet:
    torch.manual_seed(0)
    net = create_seg_model(
        "unetpp", encoder="tu-test_resnet", encoder_weights=None, image_size=SIZE,
        decoder_channels=(16, 8, 8, 8, 8),
    )  # fmt: skip
    with torch.no_grad():
        net.segmentation_head[0].weight.mul_(10.0)  # confident pixels at init
    return FeatureNet(net)


def step_loss(name: str, quality, info: StepInfo = ACTIVE) -> tuple[torch.Tensor, dict]:
    cls = METHODS[name]
    method = cls(method_args(cls), [tiny_net()], quality if cls.uses_quality else None)
    g = torch.Generator().manual_seed(0)
    x_u = torch.randn(4, 3, SIZE, SIZE, generator=g)
    box = torch.zeros(4, 1, SIZE, SIZE)
    box[::2, :, :16, :16] = 1
    views = tuple(x_u + 0.3 * torch.randn(x_u.shape, generator=g) for _ in range(2))
    x_l = torch.randn(2, 3, SIZE, SIZE, generator=g)
    batch = Batch(x_l, (x_l[:, :1] > 0).float(), x_u, views, (box, box.flip(-1)))
    torch.manual_seed(5)  # UniMatch's dropout draws the same channels in both runs
    return method.train_step(batch, info)


@pytest.mark.parametrize(
    ("qw", "base"), [("fixmatch_quality", "fixmatch"), ("unimatch_quality", "unimatch")]
)
def test_quality_variant_at_uniform_weights_is_its_base(qw, base):
    loss_base, logs_base = step_loss(base, None)
    loss_qw, logs_qw = step_loss(qw, ConstantQuality(0.8))
    assert float(logs_base["loss_unsup"]) > 0
    assert torch.allclose(loss_qw, loss_base, atol=1e-6)
    assert float(logs_qw["kept_fraction"]) == 1.0
    # Below tau every weight is 0: no unlabeled term at all.
    _, logs_low = step_loss(qw, ConstantQuality(0.3))
    assert float(logs_low["loss_unsup"]) == 0.0 and float(logs_low["kept_fraction"]) == 0.0


def test_unimatch_qar_is_unimatch_plus_the_qar_term():
    lam = 0.4
    info = StepInfo(step=0, epoch=5.0, lam=lam, ramp=1.0)
    loss_base, _ = step_loss("unimatch", None)  # lambda 1
    loss_qar, logs = step_loss("unimatch_qar", ConstantQuality(0.7), info)
    # UniMatch's terms keep weight 1 whatever lambda_qar(t) is; QAR adds lam (1 - q).
    assert torch.allclose(loss_qar, loss_base + lam * (1 - 0.7), atol=1e-6)
    assert float(logs["loss_qar"]) == pytest.approx(0.3)
