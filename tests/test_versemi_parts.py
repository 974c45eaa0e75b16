"""VerSemi's building blocks (docs/METHOD.md §11): the dynamic head's parameters and shapes
for K tasks, a prompt that changes the output, the task table, the task-balanced sampler's
shares, cross-task partners and square boxes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from data.io import DataError
from data.multitask import (
    STRIDE,
    SquareBox,
    TaskBalancedBatchSampler,
    TaskDataset,
    different_task_partner,
    load_task_table,
)
from data.seg_datasets import LabeledSegDataset
from models.attention_unet import AttentionUNet
from models.seg_models import create_seg_model
from models.swin_unet import SwinUNet
from models.versemi import DynamicHead, PromptedSegNet, num_dynamic_parameters


def test_dynamic_head_parameters_and_shapes_for_k_tasks():
    assert num_dynamic_parameters() == (8 * 8 + 8) + (8 * 8 + 8) + (8 + 1) == 153
    for k in (2, 3, 6):
        head = DynamicHead(deep_channels=64, feature_channels=16, num_tasks=k)
        assert head.controller.weight.shape == (153, 64 + k, 1, 1)
        assert head.controller.bias.shape == (153,)
        total = sum(p.numel() for p in head.parameters())
        # controller + 1x1 reduction 16 -> 8 + GroupNorm(64)
        assert total == (64 + k) * 153 + 153 + (16 * 8 + 8) + 2 * 64
        out = head(
            torch.randn(3, 64, 2, 2), torch.randn(3, 16, 32, 32), torch.tensor([0, k - 1, 1])
        )
        assert out.shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match=r"task indices must lie in \[0, 3\)"):
        DynamicHead(64, 16, 3)(
            torch.randn(1, 64, 2, 2), torch.randn(1, 16, 8, 8), torch.tensor([3])
        )


def bases():
    torch.manual_seed(0)
    return {
        "unetpp": (create_seg_model("unetpp", encoder="tu-test_resnet", encoder_weights=None,
                                    image_size=32, decoder_channels=(16, 8, 8, 8, 8)), 32),
        "attentionunet": (AttentionUNet("resnet18", None, decoder_channels=(16, 8, 8, 8, 8)), 32),
        "swinunet": (SwinUNet(image_size=64, embed_dim=12, depths=(1, 1, 1, 1),
                              num_heads=(1, 1, 1, 1), decoder_depths=(1, 1, 1, 1)), 64),
    }  # fmt: skip


@pytest.mark.parametrize("arch", ["unetpp", "attentionunet", "swinunet"])
def test_a_prompt_changes_the_output_on_every_architecture(arch):
    base, size = bases()[arch]
    net = PromptedSegNet(base, num_tasks=3).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = net(x, torch.tensor([0, 0]))
        b = net(x, torch.tensor([1, 1]))
        c = net(x, torch.tensor([0, 1]))
    assert a.shape == (2, 1, size, size)
    assert (a - b).abs().mean() > 1e-4  # another task, another head
    assert torch.allclose(c[0], a[0], atol=1e-6) and torch.allclose(c[1], b[1], atol=1e-6)
    net.train()
    net(x, torch.tensor([2, 1])).mean().backward()
    assert (
        net.head.controller.weight.grad is not None
        and net.head.controller.weight.grad.abs().sum() > 0
    )


def write_table(tmp_path, tiny_demo, rows=None):
    header = "name,labeled_csv,unlabeled_csv,val_csv,test_csv"
    rows = rows or [
        f"lesions,{tiny_demo['train']},{tiny_demo['unlabeled']},{tiny_demo['val']},{tiny_demo['test']}",
        f"other,{tiny_demo['train']},,{tiny_demo['val']},{tiny_demo['test']}",
    ]
    path = tmp_path / "tasks.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_task_table_reads_and_names_the_row_at_fault(tmp_path, tiny_demo):
    tasks = load_task_table(write_table(tmp_path, tiny_demo))
    assert [t.name for t in tasks] == ["lesions", "other"]
    assert tasks[1].unlabeled_csv is None and tasks[0].labeled_csv == tiny_demo["train"]
    bad = write_table(tmp_path, tiny_demo, [
        f"a,{tiny_demo['train']},,{tiny_demo['val']},{tiny_demo['test']}",
        f"b,{tmp_path / 'nope.csv'},,{tiny_demo['val']},{tiny_demo['test']}",
    ])  # fmt: skip
    with pytest.raises(DataError, match=r"tasks.csv, row 3: labeled_csv .*nope.csv does not exist"):
        load_task_table(bad)
    dup = write_table(tmp_path, tiny_demo, [
        f"a,{tiny_demo['train']},,{tiny_demo['val']},{tiny_demo['test']}",
        f"a,{tiny_demo['train']},,{tiny_demo['val']},{tiny_demo['test']}",
    ])  # fmt: skip
    with pytest.raises(DataError, match="row 3: task name 'a' is repeated"):
        load_task_table(dup)
    (tmp_path / "t.json").write_text(
        '[{"name": "x", "labeled_csv": "", "val_csv": "", "test_csv": ""}]'
    )
    with pytest.raises(DataError, match="entry 0: column labeled_csv is empty"):
        load_task_table(tmp_path / "t.json")


def test_every_batch_holds_each_task_in_equal_shares():
    sizes = [3, 10, 7]
    sampler = TaskBalancedBatchSampler(sizes, per_task=2, seed=5)
    assert len(sampler) == 5  # the largest task, 10 images, seen once at 2 per batch
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == 5
        seen = {k: Counter() for k in range(3)}
        for batch in batches:
            tasks = [c // STRIDE for c in batch]
            assert tasks == [0, 0, 1, 1, 2, 2]  # grouped by task, equal shares
            for c in batch:
                task, local = divmod(c, STRIDE)
                seen[task][local % sizes[task]] += 1
        assert sorted(seen[1].values()) == [1] * 10  # the largest: each image once
        assert set(seen[0]) == {0, 1, 2} and set(seen[2]) == set(range(7))  # the rest cycle
    # Reproducible from the seed; another epoch, another order.
    a = TaskBalancedBatchSampler(sizes, 2, seed=5)
    a.set_epoch(1)
    b = TaskBalancedBatchSampler(sizes, 2, seed=5)
    b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert list(a) != list(b)
    # Two ranks split the batches.
    r0, r1 = (TaskBalancedBatchSampler(sizes, 2, 5, rank=r, world_size=2) for r in (0, 1))
    assert len(list(r0)) + len(list(r1)) == 5


def test_task_dataset_tags_items_with_their_task():
    rng = np.random.default_rng(0)
    sets = [
        LabeledSegDataset.from_arrays(rng.integers(0, 255, (n, 16, 16, 3), np.uint8),
                                      np.zeros((n, 16, 16), np.uint8), augment=True)
        for n in (2, 3)
    ]  # fmt: skip
    data = TaskDataset(sets)
    assert len(data) == 5
    item = data[1 * STRIDE + 3 * 4 + 2]  # task 1, epoch 4, image 2
    assert item["task"] == 1 and item["index"] == 2


def test_cross_task_partners_and_square_boxes():
    tasks = torch.tensor([0, 0, 1, 1, 2, 2])
    partner = different_task_partner(tasks)
    assert torch.all(tasks[partner] != tasks)
    assert partner.tolist() == [2, 2, 4, 4, 0, 0]
    with pytest.raises(ValueError, match="two tasks"):
        different_task_partner(torch.tensor([1, 1]))
    box = SquareBox()(np.random.default_rng(0), 48)
    assert box.sum() == 32 * 32  # side 2/3 x 48
    sides = {
        int(np.sqrt(SquareBox((0.3, 0.6))(np.random.default_rng(s), 100).sum())) for s in range(50)
    }
    assert min(sides) >= 30 and max(sides) <= 60 and len(sides) > 10


# --------------------------------------------------------------------------------------
# Losses (training/versemi_losses.py)
# --------------------------------------------------------------------------------------


def prompted(num_tasks: int = 3) -> PromptedSegNet:
    base, _ = bases()["unetpp"]
    return PromptedSegNet(base, num_tasks)


def loss_batch():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 32, 32, generator=g)
    y = (torch.rand(4, 1, 32, 32, generator=g) > 0.6).float()
    tasks = torch.tensor([0, 0, 1, 1])
    box = torch.zeros(4, 1, 32, 32)
    box[:, :, 4:25, 6:27] = 1
    return x, y, tasks, box


def test_stage1_pastes_the_partner_and_asks_each_prompt_for_its_own_region():
    from training.versemi_losses import paste, stage1_loss

    x, y, tasks, box = loss_batch()
    partner = different_task_partner(tasks)
    calls = []

    class Spy(torch.nn.Module):
        """Records (image, task) of every call; predicts nothing (zeros)."""

        def forward(self, xi, ti):
            calls.append((xi.clone(), ti.clone()))
            return torch.zeros(*ti.shape, 1, 32, 32, requires_grad=True)

    loss, terms = stage1_loss(Spy(), x, y, tasks, box, partner, synthetic=2)
    assert torch.isfinite(loss) and set(terms) == {"loss_sup", "loss_syn", "loss_paste"}
    mixed = paste(x, x[partner], box)
    assert torch.equal(calls[0][0], x) and torch.equal(calls[0][1], tasks)
    # one forward of the mixed image under the synthetic, own and partner's prompts
    assert len(calls) == 2 and torch.equal(calls[1][0], mixed)
    assert calls[1][1][0].tolist() == [2, 2, 2, 2] and torch.equal(calls[1][1][1], tasks)
    assert torch.equal(calls[1][1][2], tasks[partner])
    assert torch.all(tasks[partner] != tasks)


def test_the_aggregated_target_carries_no_gradient_and_weights_follow_eqn_8():
    from training.versemi_losses import aggregated_target, stage2_terms

    torch.manual_seed(0)
    net = prompted(3)
    x, y, _, box = loss_batch()
    target = aggregated_target(net, x, num_datasets=2)
    assert not target.requires_grad and target.shape == (4, 1, 32, 32)
    with torch.no_grad():
        each = [torch.sigmoid(net(x, torch.full((4,), k))) for k in range(2)]
    assert torch.allclose(target, torch.maximum(*each))
    x_u = torch.randn(4, 3, 32, 32)
    loss, terms, _ = stage2_terms(net, x_u, x, y, box, num_datasets=2)
    loss.backward()
    assert net.head.controller.weight.grad.abs().sum() > 0
    same, _, _ = stage2_terms(net, x_u, x, y, box, 2, weights=torch.full((4,), 0.3))
    assert torch.allclose(same, loss)  # equal weights: the plain mean
    none, t0, _ = stage2_terms(net, x_u, x, y, box, 2, weights=torch.zeros(4))
    assert float(t0["loss_agg"]) == 0.0 and torch.allclose(none, terms["loss_region"])


def test_a_resumed_pass_skips_the_batches_already_seen():
    full = TaskBalancedBatchSampler([3, 10, 7], per_task=2, seed=5)
    full.set_epoch(2)
    resumed = TaskBalancedBatchSampler([3, 10, 7], per_task=2, seed=5)
    resumed.set_epoch(2, start=3)
    assert list(resumed) == list(full)[3:]
    resumed.set_epoch(3)  # the next pass is whole again
    assert len(list(resumed)) == 5


def test_task_dataset_keeps_table_indices_when_tasks_are_left_out():
    rng = np.random.default_rng(0)
    sets = [
        LabeledSegDataset.from_arrays(rng.integers(0, 255, (2, 16, 16, 3), np.uint8),
                                      np.zeros((2, 16, 16), np.uint8), augment=False)
        for _ in range(2)
    ]  # fmt: skip
    data = TaskDataset(sets, task_ids=[0, 2])  # task 1 has no unlabeled images
    assert data[1 * STRIDE + 1]["task"] == 2 and data[0]["task"] == 0
    with pytest.raises(ValueError, match="task_ids"):
        TaskDataset(sets, task_ids=[0])


def test_task_table_command_prints_rows_and_pools_the_splits(tmp_path, tiny_demo, capsys):
    from data.io import load_labeled_csv
    from data.multitask import main

    table = write_table(tmp_path, tiny_demo)
    assert main([str(table)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[0] for r in rows] == ["lesions", "other"] and rows[1][2] == "-"
    assert rows[0][1] == str(tiny_demo["train"].resolve())
    assert main([str(table), "--pool", str(tmp_path / "pooled")]) == 0
    pooled = load_labeled_csv(tmp_path / "pooled" / "train.csv")
    single = load_labeled_csv(tiny_demo["train"])
    assert len(pooled.image_paths) == 2 * len(single.image_paths)
    assert main([str(tmp_path / "missing.csv")]) == 1
    assert "missing.csv" in capsys.readouterr().err


def test_task_table_names_each_tasks_g_phi(tmp_path, tiny_demo):
    ckpt = tmp_path / "g.pth"
    ckpt.write_bytes(b"")
    d = tiny_demo
    path = tmp_path / "tasks.csv"
    path.write_text(
        "name,labeled_csv,unlabeled_csv,val_csv,test_csv,mq_checkpoint\n"
        f"a,{d['train']},,{d['val']},{d['test']},{ckpt}\n"
        f"b,{d['train']},,{d['val']},{d['test']},\n"
    )
    tasks = load_task_table(path)
    assert tasks[0].mq_checkpoint == ckpt and tasks[1].mq_checkpoint is None
    path.write_text(path.read_text().replace(str(ckpt), str(tmp_path / "none.pth")))
    with pytest.raises(DataError, match=r"row 2: mq_checkpoint .*none.pth does not exist"):
        load_task_table(path)


def test_cutmix_labels_move_with_the_pasted_image():
    """An oracle that segments exactly what each prompt should see in the mixed image
    (all of y_mix for the synthetic task, each task's own part in its own region) makes
    every paste term vanish: the labels were pasted with the same box as the images."""
    from training.versemi_losses import paste, stage1_loss

    x, y, tasks, box = loss_batch()
    partner = different_task_partner(tasks)
    y_mix = paste(y, y[partner], box)
    mixed = paste(x, x[partner], box)

    class Oracle(torch.nn.Module):
        def forward(self, xi, ti):
            if ti.dim() == 1:  # the clean labeled images under their own prompts
                return 40.0 * (2 * y - 1)
            assert torch.equal(xi, mixed)
            wanted = torch.stack([y_mix, y * (1 - box), y[partner] * box])
            return 40.0 * (2 * wanted - 1)

    _, terms = stage1_loss(Oracle(), x, y, tasks, box, partner, synthetic=2)
    assert float(terms["loss_syn"]) < 1e-3 and float(terms["loss_paste"]) < 1e-3
    shifted = torch.roll(box, 7, dims=-1)  # labels pasted with another box than the images
    wrong = torch.stack([paste(y, y[partner], shifted)] * 3)
    _, bad = stage1_loss(lambda xi, ti: 40.0 * (2 * wrong - 1) if ti.dim() == 2 else
                         40.0 * (2 * y - 1), x, y, tasks, box, partner, synthetic=2)  # fmt: skip
    assert float(bad["loss_syn"]) > 0.05
