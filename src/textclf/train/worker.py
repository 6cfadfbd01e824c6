"""One training process: the pretrained model, fine-tuning, and on rank 0 the evaluation, export and reports.

``textclf.train.job`` checks the input and starts one of these per GPU (or one on CPU) on every host.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from textclf.contract import opt_ml
from textclf.contract.cpus import available_cpus
from textclf.contract.metrics import format_metric
from textclf.errors import EXIT_OK, UserError
from textclf.export.gate import EvalSet
from textclf.export.options import ExportOptions
from textclf.export.pipeline import export_model_dir
from textclf.model.encoding import TextEncoder
from textclf.train import checkpoints, data, distributed, loop, pretrained, reports
from textclf.train.checkpoints import TrainerState
from textclf.train.device import Plan as DevicePlan
from textclf.train.distributed import Cluster, Worker
from textclf.train.evaluation import EncodedSet, compute_metrics, confusion, encode_dataset, metric_lines, predict
from textclf.train.hyperparameters import Hyperparameters
from textclf.train.job import disk_full, fail, nearly_full, say
from textclf.train.loop import TrainingRun
from textclf.train.pretrained import LoadedModel


@dataclass(frozen=True)
class HostInputs:
    """What every process of a host trains on, prepared once per host by the launching process."""

    source: pretrained.ModelSource  # unpacked once (a .tar.gz channel), into the job's work directory
    encoder: TextEncoder
    train: EncodedSet
    validation: EncodedSet
    fingerprints: dict[str, str]  # sha256 of the train and validation rows: part of the run's identity


def prepare_host(hp: Hyperparameters, datasets: data.Datasets, channels: dict[str, Path], work: Path) -> HostInputs:
    """Find the pretrained model, load its tokenizer and tokenize the data: once, not once per rank."""
    source = pretrained.resolve(hp.model_name_or_path, channels, work)
    tokenizer = pretrained.load_tokenizer(source)
    backend = tokenizer.backend_tokenizer
    # A copy: TextEncoder switches truncation and padding off, and the tokenizer is saved with the model.
    encoder = TextEncoder(type(backend).from_str(backend.to_str()), hp.max_seq_length, hp.truncation,
                          tokenizer.pad_token_id or 0)  # fmt: skip
    label_map = datasets.label_map
    return HostInputs(
        source=source,
        encoder=encoder,
        train=encode_dataset(encoder, datasets.train, label_map),
        validation=encode_dataset(encoder, datasets.validation, label_map),
        fingerprints={
            "train_data": data.fingerprint(datasets.train, label_map),
            "validation_data": data.fingerprint(datasets.validation, label_map),
        },
    )


# Hyperparameters that change neither the data, the batches nor the weights a run computes: a
# checkpoint resumes across them. Every other one is part of the run's identity.
RUN_NEUTRAL = frozenset({
    "num_threads", "device", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "eval_batch_size",
    "export_format", "quantize_per_channel", "max_accuracy_drop", "on_accuracy_drop", "keep_full_precision",
    "model_name_or_path",  # the model itself is identified by where it was loaded from (below)
    "text_column", "text_pair_column", "label_column", "label_delimiter",  # the rows are fingerprinted instead
})  # fmt: skip


def run_identity(
    hp: Hyperparameters,
    host: HostInputs,
    label_map: data.LabelMap,
    model: str,
    world_size: int,
    steps_per_epoch: int,
    total_steps: int,
) -> dict[str, Any]:
    """What makes two runs the same run: only such a run may resume the other's checkpoints."""
    return {
        **host.fingerprints,
        "labels": list(label_map.names),
        "model": model,
        "world_size": world_size,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "hyperparameters": {k: v for k, v in hp.model_dump().items() if k not in RUN_NEUTRAL},
    }


def run_worker(
    worker: Worker, cluster: Cluster, device: DevicePlan, hp: Hyperparameters, datasets: data.Datasets, host: HostInputs
) -> int:
    """One training process: train, and on rank 0 evaluate, save and export the best model."""
    p = opt_ml.paths()
    try:
        with tempfile.TemporaryDirectory(prefix="textclf-") as work:
            _train_and_export(worker, cluster, device, hp, datasets, host, p, Path(work))
        return EXIT_OK
    except Exception as exc:
        return fail(exc, p)
    finally:
        distributed.shutdown()


def _train_and_export(
    worker: Worker,
    cluster: Cluster,
    device: DevicePlan,
    hp: Hyperparameters,
    datasets: data.Datasets,
    host: HostInputs,
    p: opt_ml.Paths,
    work: Path,
) -> None:
    started = time.monotonic()
    threads = distributed.cpu_threads(hp.num_threads, cluster.procs_per_host, available_cpus())
    torch.set_num_threads(threads)
    if device.tf32:  # what autocast leaves in FP32 (and everything with mixed_precision=no) uses TF32 matmuls
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if not sys.stdout.isatty():
        transformers.utils.logging.disable_progress_bar()
    distributed.init_process_group(cluster, worker)
    host_name = cluster.hosts[cluster.host_rank]
    say(f"rank {worker.rank}/{worker.world_size} on host {host_name}: device {worker.device}, {threads} CPU thread(s)")

    transformers.set_seed(hp.seed)  # the new classification head is initialised alike on every rank
    loaded = pretrained.load(host.source, datasets.label_map, hp.max_seq_length)
    frozen = pretrained.freeze_layers(loaded.model, hp.freeze_layers)
    if worker.is_main:
        params = sum(t.numel() for t in loaded.model.parameters())
        say(
            f"model: {type(loaded.model).__name__} from {host.source.description}, {params:,} parameters, "
            f"{frozen:,} frozen"
        )
    label_map, train_set = datasets.label_map, host.train
    per_epoch, total = loop.plan_steps(len(train_set), hp, worker.world_size)
    identity = run_identity(hp, host, label_map, host.source.description, worker.world_size, per_epoch, total)
    checkpoint_dir = opt_ml.checkpoint_dir(p) / checkpoints.run_folder(identity)
    if worker.is_main:
        say(f"checkpoints: {checkpoint_dir} (a run with other data or hyperparameters has a folder of its own)")
    run = loop.prepare(
        hp, worker, loaded.model, host.encoder, loaded.input_names, label_map, train_set, host.validation,
        checkpoint_dir, identity, device.amp,
    )  # fmt: skip
    say(
        f"rank {worker.rank}/{worker.world_size}: training on {math.ceil(len(train_set) / worker.world_size)} of "
        f"{len(train_set)} examples per epoch; {per_epoch} steps per epoch, {total} steps in all"
    )
    state = loop.fit(run)
    distributed.barrier(worker)
    if worker.is_main:
        _finish(run, state, hp, datasets, loaded, host.encoder, p, work, time.monotonic() - started)
    # Every rank stays until rank 0 has written and verified the model: a platform that sees one host
    # exit (SageMaker local mode's compose, say) may stop the others.
    distributed.wait_for_main(worker)


def _finish(
    run: TrainingRun,
    state: TrainerState,
    hp: Hyperparameters,
    datasets: data.Datasets,
    loaded: LoadedModel,
    encoder: TextEncoder,
    p: opt_ml.Paths,
    work: Path,
    train_seconds: float,
) -> None:
    """Rank 0: best weights -> final metrics (validation, test) -> HF staging dir -> export -> reports."""
    label_map, model = datasets.label_map, run.raw_model
    record = checkpoints.load_best(run.checkpoint_dir, model)
    best_step = record["step"] if record else state.global_step

    def evaluate(encoded: EncodedSet) -> tuple[dict, Any]:
        rows = list(range(len(encoded)))
        logits = predict(model, encoder, encoded, rows, run.input_names, run.device, hp.eval_batch_size, run.amp_dtype)
        return compute_metrics(logits, encoded.labels, label_map, hp.multi_label_threshold), logits

    validation_set = run.validation
    validation, validation_logits = evaluate(validation_set)
    test = None
    if datasets.test is not None:
        test, _ = evaluate(encode_dataset(encoder, datasets.test, label_map))
        for line in metric_lines("test", test):
            say(line)

    hf_dir = work / "hf"
    model.save_pretrained(str(hf_dir))  # transformers 5 writes safetensors only
    loaded.tokenizer.save_pretrained(str(hf_dir))
    flat = {f"validation_{k}": v for k, v in validation.items() if isinstance(v, float)}
    flat.update({f"test_{k}": v for k, v in (test or {}).items() if isinstance(v, float)})
    try:
        export_metrics = _export(hf_dir, p.model_dir, hp, datasets, flat, loaded.source.description)
    except Exception as exc:
        # A full disk shows up as whatever the writer raises (OSError, onnx, torch): say what it was.
        if isinstance(exc, UserError) or not (disk_full(exc) or nearly_full(p.model_dir)):
            raise
        reason = checkpoints.write_error("the model", p.model_dir, exc)
        raise UserError(
            f"{reason}; the fine-tuned weights stay in {run.checkpoint_dir} "
            "(best-step-*.safetensors and the last checkpoint): free space and rerun to export them"
        ) from exc
    for name in ("int8_validation_accuracy", "int8_label_agreement"):
        if name in export_metrics:
            say(format_metric(name, float(export_metrics[name])))

    out = p.output_data_dir
    out.mkdir(parents=True, exist_ok=True)
    matrix = confusion(validation_logits, validation_set.labels, label_map, hp.multi_label_threshold)
    reports.plot_confusion_matrix(out / reports.CONFUSION_FILE, matrix, list(label_map.names),
                                  f"validation, best model (step {best_step})")  # fmt: skip
    reports.plot_learning_curve(out / reports.CURVE_FILE, state.history, hp.eval_metric)
    objective = hp.objective_metric
    reports.write_metrics(out, {
        "objective": {"name": objective, "value": validation[hp.eval_metric]},
        "labels": list(label_map.names),
        "problem_type": hp.problem_type,
        "best": {"step": best_step, "validation": validation},
        "final": {"validation": validation, "test": test},
        "test": test,
        "export": export_metrics,
        "history": state.history,
        "training": {
            "total_steps": run.total_steps, "steps_run": state.global_step - (run.resumed_from or 0),
            "resumed_from_step": run.resumed_from, "epochs_completed": state.epoch, "world_size": run.worker.world_size,
            "train_examples": len(run.train), "validation_examples": len(validation_set),
            "validation_origin": datasets.validation_origin, "seconds": round(train_seconds, 1),
            "hyperparameters": hp.model_dump(),
        },
    })  # fmt: skip
    say(f"outputs written to {out} and the model to {p.model_dir}")
    say(f"best model (step {best_step}) on validation:")
    for line in metric_lines("validation", validation, last=hp.eval_metric):  # the objective last: tuners keep it
        say(line)


def _export(
    hf_dir: Path, model_dir: Path, hp: Hyperparameters, datasets: data.Datasets, metrics: dict, source: str
) -> dict[str, Any]:
    """Turn the staging HF directory into the served model directory; returns the manifest's metrics."""
    options = ExportOptions.from_hyperparameters(hp)
    validation = datasets.validation
    eval_set = EvalSet(texts=validation.texts, pairs=validation.pairs, labels=datasets.label_map.encode(validation))
    manifest = export_model_dir(hf_dir, model_dir, options, eval_set=eval_set, metrics=metrics, source_model=source)
    say(f"export: {manifest.precision} ONNX model written to {model_dir}")
    return dict(manifest.metrics)
