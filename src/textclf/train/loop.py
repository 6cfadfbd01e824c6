"""Fine-tuning: the set-up (optimizer, schedule, precision, batches) and the loop, ``fit``.

The loop is one screen: for every optimizer step of every epoch, forward and backward over an
accumulation group, clip, step, log; evaluate at epoch end (and every ``eval_steps``), keep the best
weights, stop early, checkpoint, and stop cleanly on SIGTERM. Everything else is a helper here or
in ``evaluation`` (predictions, metrics), ``checkpoints`` (resume) and ``distributed`` (ranks).

Data order is a pure function of (seed, epoch, rank, world size), so a checkpoint only needs the
epoch and the step within it to resume on exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from textclf.contract.metrics import format_metric
from textclf.errors import CheckpointError, TrainingStoppedError
from textclf.model.encoding import TextEncoder
from textclf.train import checkpoints, distributed
from textclf.train.checkpoints import TrainerState
from textclf.train.data import LabelMap
from textclf.train.distributed import Worker
from textclf.train.evaluation import EncodedSet, compute_metrics, loss_sum, metric_lines, model_inputs, predict
from textclf.train.hyperparameters import Hyperparameters
from textclf.train.job import raise_if_stopped

LENGTH_GROUP_BATCHES = 50  # batches per length-sorted mega-batch (as transformers' LengthGroupedSampler)


class StopSignal:
    """Turns SIGTERM into a flag the loop reads at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.requested = True
        print(f"signal {signal.Signals(signum).name} received: checkpointing at the next step boundary", flush=True)


# -- set-up ----------------------------------------------------------------------------------------


AMP_DTYPES: dict[str, torch.dtype | None] = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def build_optimizer(model: torch.nn.Module, hp: Hyperparameters) -> torch.optim.AdamW:
    """AdamW; biases and normalisation weights get no weight decay."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for module in model.modules():
        is_norm = isinstance(module, torch.nn.LayerNorm) or "norm" in type(module).__name__.lower()
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                (no_decay if is_norm or name == "bias" else decay).append(param)
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused CUDA kernel updates every parameter in one launch instead of several per tensor.
    on_gpu = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(groups, lr=hp.learning_rate, fused=on_gpu)


def epoch_groups(lengths: np.ndarray, hp: Hyperparameters, worker: Worker, epoch: int) -> list[list[list[int]]]:
    """This rank's optimizer steps for ``epoch``: groups of ``gradient_accumulation_steps`` batches.

    The order is global, a function of (seed, epoch) only: the shuffled examples (padded, as
    DistributedSampler does, to a multiple of the world size) are sorted by length within
    mega-batches of 50 global batches, cut into global batches of ``batch_size`` x world size, and
    the global batches are shuffled; every rank takes its equal slice of each. So a batch holds texts
    of similar length (little padding), and N processes of ``batch_size`` B step on exactly the
    examples that one process of ``batch_size`` N x B would.
    """
    world = worker.world_size
    generator = torch.Generator()
    generator.manual_seed(hp.seed + epoch)  # as DistributedSampler(shuffle=True, seed=seed).set_epoch(epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    order += order[: (-len(order)) % world]  # every rank gets as many examples
    rng = np.random.default_rng([hp.seed, epoch])
    size = hp.batch_size * world
    mega = size * LENGTH_GROUP_BATCHES
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    batches = [batches[i] for i in rng.permutation(len(batches))]
    mine = [batch[worker.rank * len(batch) // world : (worker.rank + 1) * len(batch) // world] for batch in batches]
    accumulation = hp.gradient_accumulation_steps
    return [mine[i : i + accumulation] for i in range(0, len(mine), accumulation)]


def plan_steps(train_size: int, hp: Hyperparameters, world_size: int) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps)."""
    per_rank = math.ceil(train_size / world_size)
    per_epoch = math.ceil(math.ceil(per_rank / hp.batch_size) / hp.gradient_accumulation_steps)
    total = per_epoch * hp.epochs
    return per_epoch, min(total, hp.max_steps) if hp.max_steps else total


@dataclass
class TrainingRun:
    """Everything the loop works with, built by ``prepare``."""

    hp: Hyperparameters
    worker: Worker
    model: torch.nn.Module  # DDP-wrapped when distributed
    raw_model: PreTrainedModel  # the model itself (evaluation, checkpoints, saving)
    encoder: TextEncoder
    input_names: tuple[str, ...]
    label_map: LabelMap
    train: EncodedSet
    validation: EncodedSet
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    steps_per_epoch: int
    total_steps: int
    checkpoint_dir: Path
    state: TrainerState
    stop: StopSignal
    resumed_from: int | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def device(self) -> torch.device:
        return self.worker.torch_device


def prepare(
    hp: Hyperparameters,
    worker: Worker,
    model: PreTrainedModel,
    encoder: TextEncoder,
    input_names: tuple[str, ...],
    label_map: LabelMap,
    train: EncodedSet,
    validation: EncodedSet,
    checkpoint_dir: Path,
    identity: dict[str, Any],
    amp: str = "no",
) -> TrainingRun:
    """Optimizer, schedule, precision and DDP around ``model``; resumes from the latest checkpoint."""
    raise_if_stopped()  # from here on a SIGTERM means "checkpoint at the next step boundary"
    stop = StopSignal()
    cast(torch.nn.Module, model).to(worker.torch_device)  # transformers' decorated `to` hides Module's signature
    steps_per_epoch, total = plan_steps(len(train), hp, worker.world_size)
    optimizer = build_optimizer(model, hp)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(hp.warmup_ratio * total), total)
    amp_dtype = AMP_DTYPES[amp]
    scaler = torch.amp.GradScaler(worker.torch_device.type, enabled=amp_dtype == torch.float16)
    state = TrainerState(labels=list(label_map.names), identity=identity)
    resumed_from = None
    if worker.is_main:
        checkpoints.remove_partial(checkpoint_dir)
    latest = checkpoints.latest_verified(checkpoint_dir, say if worker.is_main else lambda _: None)
    # Every rank restores the same checkpoint from its own copy (SageMaker syncs each host's LocalPath
    # from the same S3 prefix); ranks that would start from different steps could never line up.
    chosen = distributed.gather_objects(worker, latest.name if latest is not None else None)
    if len(set(chosen)) > 1:
        found = ", ".join(f"rank {rank}: {name or 'none'}" for rank, name in enumerate(chosen))
        raise CheckpointError(
            f"the ranks would resume from different checkpoints ({found}); every host's checkpoint directory "
            f"({checkpoint_dir}) must hold the same checkpoints"
        )
    if latest is not None:
        state = checkpoints.restore(latest, model, optimizer, scheduler, scaler, identity, worker.rank)
        resumed_from = state.global_step
    wrapped: torch.nn.Module = model
    if worker.is_distributed:
        device_ids = [worker.torch_device] if worker.torch_device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)
    model.train()
    return TrainingRun(
        hp=hp,
        worker=worker,
        model=wrapped,
        raw_model=model,
        encoder=encoder,
        input_names=input_names,
        label_map=label_map,
        train=train,
        validation=validation,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        amp_dtype=amp_dtype,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        checkpoint_dir=checkpoint_dir,
        state=state,
        stop=stop,
        resumed_from=resumed_from,
    )


# -- one step, one evaluation, one checkpoint --------------------------------------------------------


def train_step(run: TrainingRun, group: list[list[int]]) -> float:
    """Forward and backward over an accumulation group, then one optimizer step; returns the mean loss.

    A step that the fp16 GradScaler skips (inf/NaN gradients) does not advance the LR schedule.
    """
    examples = sum(len(batch) for batch in group)
    total = torch.zeros((), device=run.device)
    # Every micro-batch is built (and, on a GPU, its copy queued) before the first forward runs.
    prepared = [model_inputs(run.encoder, run.train, batch, run.input_names, run.device) for batch in group]
    for i, (inputs, labels) in enumerate(prepared):
        # Gradients are all-reduced once per group: skip DDP's sync on all but the last micro-batch.
        last = i == len(group) - 1 or not run.worker.is_distributed
        sync = nullcontext() if last else cast(DistributedDataParallel, run.model).no_sync()
        with sync:
            with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
                logits = run.model(**inputs).logits
            loss = loss_sum(logits, labels, run.label_map.multi_label) / examples
            run.scaler.scale(loss).backward()
        total += loss.detach()
    if run.hp.max_grad_norm > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), run.hp.max_grad_norm)
    scale = run.scaler.get_scale()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if not run.scaler.is_enabled() or run.scaler.get_scale() >= scale:  # a skipped step lowers the scale
        run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return float(total)


def evaluate(run: TrainingRun, train_loss: float | None) -> bool:
    """Evaluate on validation (sharded over ranks), record it, keep the weights if best; True if improved."""
    state, hp = run.state, run.hp
    rows = distributed.shard(run.worker, len(run.validation))
    logits = predict(
        run.raw_model, run.encoder, run.validation, rows, run.input_names, run.device, hp.eval_batch_size,
        run.amp_dtype,
    )  # fmt: skip
    logits = distributed.gather_rows(run.worker, logits, len(run.validation))
    metrics = compute_metrics(logits, run.validation.labels, run.label_map, hp.multi_label_threshold)
    record = {
        "step": state.global_step,
        "epoch": round(state.global_step / run.steps_per_epoch, 4),
        "learning_rate": run.scheduler.get_last_lr()[0],
        "train_loss": train_loss,
        "validation": metrics,
        "elapsed_s": round(time.monotonic() - run.started, 1),
    }
    state.history.append(record)
    value = metrics[hp.eval_metric]
    improved = state.best_metric is None or (
        value < state.best_metric if hp.eval_metric == "loss" else value > state.best_metric
    )
    if improved:
        state.best_metric, state.best_step, state.evals_without_improvement = value, state.global_step, 0
        if run.worker.is_main:
            checkpoints.save_best(run.checkpoint_dir, run.raw_model, {"step": state.global_step, "metrics": metrics})
    else:
        state.evals_without_improvement += 1
    if run.worker.is_main:
        note = "new best" if improved else f"no improvement for {state.evals_without_improvement} evaluation(s)"
        say(f"evaluation at step {state.global_step}: validation_{hp.eval_metric}={value:.4f} ({note})")
        for line in [format_metric("epoch", record["epoch"]), *metric_lines("validation", metrics, hp.eval_metric)]:
            say(line)
    return improved


def save_checkpoint(run: TrainingRun) -> None:
    """Rank 0 writes the checkpoint, with every rank's RNG state (each resumes its own dropout stream)."""
    rng_states = distributed.gather_objects(run.worker, checkpoints.rng_state())
    if run.worker.is_main:
        path = checkpoints.save(
            run.checkpoint_dir, run.raw_model, run.optimizer, run.scheduler, run.scaler, run.state,
            run.hp.keep_checkpoints, rng_states,
        )  # fmt: skip
        say(f"checkpoint saved: {path.name} (step {run.state.global_step}, epoch {run.state.epoch})")


def say(line: str) -> None:
    print(line, flush=True)


class Progress:
    """A progress line every ``log_every_steps`` (and a tqdm bar when stdout is a terminal)."""

    def __init__(self, run: TrainingRun) -> None:
        self.run, self.enabled = run, run.worker.is_main
        self.first_step, self.t0 = run.state.global_step, time.monotonic()
        self.window_loss, self.window_steps, self.window_examples, self.window_t0 = 0.0, 0, 0, time.monotonic()
        self.eval_loss, self.eval_steps = 0.0, 0
        self.bar = None
        if self.enabled and sys.stdout.isatty():
            self.bar = tqdm(total=run.total_steps, initial=run.state.global_step, unit="step", dynamic_ncols=True)

    def update(self, loss: float, examples: int) -> None:
        self.window_loss += loss
        self.window_steps += 1
        self.window_examples += examples * self.run.worker.world_size
        self.eval_loss += loss
        self.eval_steps += 1
        if self.bar is not None:
            self.bar.update(1)
        state, hp = self.run.state, self.run.hp
        if self.enabled and (state.global_step % hp.log_every_steps == 0 or state.global_step == self.run.total_steps):
            now = time.monotonic()
            rate = self.window_examples / max(now - self.window_t0, 1e-9)
            per_step = (now - self.t0) / max(state.global_step - self.first_step, 1)
            eta = time.strftime("%H:%M:%S", time.gmtime(per_step * (self.run.total_steps - state.global_step)))
            lr, loss_avg = self.run.scheduler.get_last_lr()[0], self.window_loss / self.window_steps
            line = (
                f"step {state.global_step}/{self.run.total_steps} | epoch {state.epoch + 1}/{hp.epochs} | "
                f"loss {loss_avg:.4f} | lr {lr:.3g} | {rate:.1f} samples/s | eta {eta}"
            )
            lines = [line, format_metric("train_loss", loss_avg), format_metric("learning_rate", lr)]
            lines.append(format_metric("samples_per_second", rate))
            for text in lines:
                if self.bar is not None:
                    self.bar.write(text)
                else:
                    say(text)
            self.window_loss, self.window_steps, self.window_examples, self.window_t0 = 0.0, 0, 0, now

    def take_eval_loss(self) -> float | None:
        """Mean training loss since the previous evaluation."""
        mean = self.eval_loss / self.eval_steps if self.eval_steps else None
        self.eval_loss, self.eval_steps = 0.0, 0
        return mean

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- the loop --------------------------------------------------------------------------------------


def fit(run: TrainingRun) -> TrainerState:
    """Train until the last epoch, ``max_steps`` or early stopping; returns the final state."""
    hp, state, worker = run.hp, run.state, run.worker
    progress = Progress(run)
    stopping = 0 < hp.early_stopping_patience <= state.evals_without_improvement  # a resumed run may be done
    if run.resumed_from is not None and worker.is_main:
        say(f"resumed from step {run.resumed_from} (epoch {state.epoch}, step {state.step_in_epoch} of it)")
    while state.epoch < hp.epochs and state.global_step < run.total_steps and not stopping:
        groups = epoch_groups(run.train.lengths, hp, worker, state.epoch)
        for group in groups[state.step_in_epoch :]:
            loss = train_step(run, group)
            state.global_step += 1
            state.step_in_epoch += 1
            progress.update(loss, sum(len(b) for b in group))
            epoch_done = state.step_in_epoch == len(groups)
            if epoch_done:
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
            last = state.global_step >= run.total_steps
            if epoch_done or last or (hp.eval_steps and state.global_step % hp.eval_steps == 0):
                evaluate(run, progress.take_eval_loss())
                stopping = 0 < hp.early_stopping_patience <= state.evals_without_improvement
            periodic = hp.checkpoint_every_steps and state.global_step % hp.checkpoint_every_steps == 0
            if epoch_done or last or stopping or periodic:
                save_checkpoint(run)
            if distributed.any_rank(worker, run.stop.requested):
                if not (epoch_done or last or stopping or periodic):
                    save_checkpoint(run)
                distributed.barrier(worker)  # nobody exits before rank 0's checkpoint is complete
                progress.close()
                raise TrainingStoppedError(
                    f"stopped by SIGTERM at step {state.global_step}/{run.total_steps}; a checkpoint was saved in "
                    f"{run.checkpoint_dir} and a rerun resumes from it"
                )
            if stopping or last or epoch_done:
                break
    progress.close()
    if worker.is_main:
        why = "early stopping" if stopping else "done"
        say(f"training finished ({why}) at step {state.global_step}/{run.total_steps}; best step {state.best_step}")
    return state
