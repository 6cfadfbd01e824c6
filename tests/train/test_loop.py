"""The training loop's pieces: global data order sliced per rank, and fp16 steps the scaler skips."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from support.tiny_model import make_tiny_model
from textclf.model.encoding import TextEncoder
from textclf.train import loop
from textclf.train.data import LabelMap, TextDataset
from textclf.train.distributed import Worker
from textclf.train.evaluation import encode_dataset
from textclf.train.hyperparameters import parse


@pytest.mark.parametrize(("rows", "world"), [(480, 2), (1000, 4), (36, 3)])
def test_ranks_step_on_slices_of_the_batches_one_process_would_take(rows: int, world: int) -> None:
    lengths = np.random.default_rng(0).integers(3, 60, size=rows)
    single = loop.epoch_groups(lengths, parse({"batch_size": str(8 * world)}), Worker(), epoch=1)
    per_rank = [
        loop.epoch_groups(lengths, parse({"batch_size": "8"}), Worker(rank, rank, world), epoch=1)
        for rank in range(world)
    ]
    assert all(len(groups) == len(single) == math.ceil(rows / world / 8) for groups in per_rank)
    for step, (whole,) in enumerate(single):
        slices = [groups[step][0] for groups in per_rank]
        assert len({len(s) for s in slices}) == 1  # equal shares: DDP's mean of means is the global mean
        assert [i for s in slices for i in s] == whole
    # Another epoch, another order; the same epoch, the same order.
    assert loop.epoch_groups(lengths, parse({"batch_size": "8"}), Worker(), epoch=2) != single
    assert loop.epoch_groups(lengths, parse({"batch_size": str(8 * world)}), Worker(), epoch=1) == single


def test_rows_that_do_not_divide_among_ranks_are_padded_as_distributed_sampler_does() -> None:
    lengths = np.random.default_rng(1).integers(3, 60, size=37)
    per_rank = [loop.epoch_groups(lengths, parse({"batch_size": "4"}), Worker(r, r, 3), epoch=0) for r in range(3)]
    for steps in zip(*per_rank, strict=True):
        assert len({len(group[0]) for group in steps}) == 1
    seen = [i for groups in per_rank for group in groups for i in group[0]]
    assert len(seen) == 39 and set(seen) == set(range(37))  # two examples twice, every example at least once


def _run(tmp_path: Path) -> SimpleNamespace:
    hf = make_tiny_model(tmp_path / "model", labels=("a", "b"), words=["good", "bad"])
    model = AutoModelForSequenceClassification.from_pretrained(hf)
    encoder = TextEncoder.from_dir(hf, 16)
    label_map = LabelMap(("a", "b"))
    data = TextDataset(["good", "bad", "good good", "bad bad"], None, [("a",), ("b",), ("a",), ("b",)], [("x", 1)] * 4)
    hp = parse({"learning_rate": "0.01", "max_grad_norm": "1.0"})
    optimizer = loop.build_optimizer(model, hp)
    return SimpleNamespace(
        hp=hp,
        worker=Worker(),
        model=model,
        raw_model=model,
        encoder=encoder,
        input_names=("input_ids", "attention_mask", "token_type_ids"),
        label_map=label_map,
        train=encode_dataset(encoder, data, label_map),
        optimizer=optimizer,
        scheduler=get_linear_schedule_with_warmup(optimizer, 0, 10),
        scaler=torch.amp.GradScaler("cpu", init_scale=1024.0),
        amp_dtype=None,
        device=torch.device("cpu"),
    )


def test_a_step_the_grad_scaler_skips_does_not_advance_the_schedule(tmp_path: Path) -> None:
    run = _run(tmp_path)
    with torch.no_grad():
        run.raw_model.classifier.bias[0] = float("nan")  # NaN logits, NaN gradients: an fp16 overflow's effect
    before = [p.detach().clone() for p in run.raw_model.parameters()]
    loop.train_step(run, [[0, 1, 2, 3]])
    assert run.scaler.get_scale() == 512.0  # the scaler found non-finite gradients, skipped and backed off
    assert run.scheduler.last_epoch == 0  # and the LR schedule did not move
    after = list(run.raw_model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True) if not torch.isnan(a).any())

    run = _run(tmp_path / "again")
    loop.train_step(run, [[0, 1, 2, 3]])
    assert run.scaler.get_scale() == 1024.0 and run.scheduler.last_epoch == 1  # a step taken advances it
