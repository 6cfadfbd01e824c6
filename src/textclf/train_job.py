"""``textclf train``: a SageMaker training job, from hyperparameters to a serve-ready model.

hyperparameters -> data (checked before torch is even imported) -> processes (one per GPU, on
every host) -> pretrained model -> fine-tuning (resumable) -> best weights -> Hugging Face staging
directory -> exporter (ONNX, INT8, parity gate) -> ``/opt/ml/model``; metrics, confusion matrix and
learning curve -> ``/opt/ml/output/data``. Only rank 0 writes the model, outputs and checkpoints.

Exit codes (SageMaker only distinguishes zero from non-zero; these tell a person or a script why):

- 0: completed.
- 1: an unexpected error (a bug): the failure file starts with ``ExceptionType: message``.
- 2: a problem the user can fix (data, hyperparameters, model, checkpoint, a full disk): the failure
  file starts with the reason.
- 143 (128 + SIGTERM): stopped by SIGTERM, after saving a checkpoint at the next step boundary
  once training has begun (at once before that). On a spot interruption the job restarts and
  resumes from it; a StopTrainingJob ends as Stopped whatever the exit code.

Every error writes ``/opt/ml/output/failure`` (the human reason on its first line) before exiting.
"""

from __future__ import annotations

import errno
import math
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textclf import data, environment, hyperparameters
from textclf.errors import UserError
from textclf.hyperparameters import Hyperparameters
from textclf.metric_definitions import format_metric

if TYPE_CHECKING:
    from textclf.checkpoints import TrainerState
    from textclf.distributed import Cluster, Worker
    from textclf.encoding import TextEncoder
    from textclf.evaluation import EncodedSet
    from textclf.pretrained import LoadedModel
    from textclf.training import TrainingRun

EXIT_OK, EXIT_BUG, EXIT_USER_ERROR, EXIT_STOPPED = 0, 1, 2, 143


class StoppedBeforeTrainingError(UserError):
    """SIGTERM before the training loop began: there is nothing to checkpoint, so stop at once."""


def _stop_at_once(signum: int, _frame: Any) -> None:
    # Replaced by the training loop's own handler (checkpoint at the next step) once training starts.
    raise StoppedBeforeTrainingError(
        f"stopped by {signal.Signals(signum).name} before training started; nothing was lost, a rerun starts afresh "
        "(or resumes from the checkpoints already in the checkpoint directory)"
    )


def say(line: str) -> None:
    print(line, flush=True)


def fail(exc: BaseException, p: environment.Paths) -> int:
    """Write the failure file for ``exc`` and return the exit code."""
    training = sys.modules.get("textclf.training")  # not imported (torch) just to classify an early error
    if isinstance(exc, UserError):
        reason, code = str(exc), EXIT_USER_ERROR
        if isinstance(exc, StoppedBeforeTrainingError) or (
            training is not None and isinstance(exc, training.TrainingStoppedError)
        ):
            code = EXIT_STOPPED
    elif disk_full(exc):
        reason, code = f"no space left on device: {type(exc).__name__}: {exc}", EXIT_USER_ERROR
    else:
        reason, code = f"{type(exc).__name__}: {exc}", EXIT_BUG
    details = "".join(traceback.format_exception(exc))
    environment.write_failure(reason, details, p)
    print(f"error: {reason}", file=sys.stderr, flush=True)
    if code == EXIT_BUG:
        print(details, file=sys.stderr, flush=True)
    return code


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a write that failed for want of space."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(exc) or "os error 28" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _nearly_full(directory: Path) -> bool:
    """Whether the file system that holds (or would hold) ``directory`` has under 1 MiB free."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        return shutil.disk_usage(directory).free < 1 << 20
    except OSError:
        return False


def main() -> int:
    p = environment.paths()
    signal.signal(signal.SIGTERM, _stop_at_once)
    try:
        hp = hyperparameters.parse(environment.read_hyperparameters(p))
        datasets = data.load(hp, environment.channels(p))
        for name, dataset in (("train", datasets.train), ("validation", datasets.validation), ("test", datasets.test)):
            if dataset is not None:
                say(data.describe(name, dataset, datasets.label_map))
        say(f"data: validation from {datasets.validation_origin}")
        from textclf import distributed  # imports torch: only once the input is known to be good

        cluster = distributed.plan(environment.read_resource_config(p))
        return distributed.launch(cluster, run_worker, cluster, hp, datasets)
    except Exception as exc:
        return fail(exc, p)


def run_worker(worker: Worker, cluster: Cluster, hp: Hyperparameters, datasets: data.Datasets) -> int:
    """One training process: train, and on rank 0 evaluate, save and export the best model."""
    p = environment.paths()
    try:
        with tempfile.TemporaryDirectory(prefix="textclf-") as work:
            _train_and_export(worker, cluster, hp, datasets, p, Path(work))
        return EXIT_OK
    except Exception as exc:
        return fail(exc, p)
    finally:
        from textclf import distributed

        distributed.shutdown()


def _train_and_export(
    worker: Worker, cluster: Cluster, hp: Hyperparameters, datasets: data.Datasets, p: environment.Paths, work: Path
) -> None:
    import torch
    import transformers

    from textclf import distributed, pretrained, training
    from textclf.encoding import TextEncoder
    from textclf.evaluation import encode_dataset

    started = time.monotonic()
    threads = distributed.cpu_threads(hp.num_threads, cluster.procs_per_host, environment.available_cpus())
    torch.set_num_threads(threads)
    if not sys.stdout.isatty():
        transformers.utils.logging.disable_progress_bar()
    distributed.init_process_group(cluster, worker)
    host = cluster.hosts[cluster.host_rank]
    say(f"rank {worker.rank}/{worker.world_size} on host {host}: device {worker.device}, {threads} CPU thread(s)")

    transformers.set_seed(hp.seed)  # the new classification head is initialised alike on every rank
    source = pretrained.resolve(hp.model_name_or_path, environment.channels(p), work)
    loaded = pretrained.load(source, datasets.label_map, hp.max_seq_length)
    frozen = pretrained.freeze_layers(loaded.model, hp.freeze_layers)
    if worker.is_main:
        params = sum(t.numel() for t in loaded.model.parameters())
        say(f"model: {type(loaded.model).__name__} from {source.description}, {params:,} parameters, {frozen:,} frozen")
    backend = loaded.tokenizer.backend_tokenizer
    # A copy: TextEncoder switches truncation and padding off, and the tokenizer is saved with the model.
    encoder = TextEncoder(type(backend).from_str(backend.to_str()), hp.max_seq_length, hp.truncation,
                          loaded.tokenizer.pad_token_id or 0)  # fmt: skip
    label_map = datasets.label_map
    train_set = encode_dataset(encoder, datasets.train, label_map)
    validation_set = encode_dataset(encoder, datasets.validation, label_map)
    per_epoch, total = training.plan_steps(len(train_set), hp, worker.world_size)
    identity = {
        "train_data": data.fingerprint(datasets.train, label_map),
        "validation_data": data.fingerprint(datasets.validation, label_map),
        "labels": list(label_map.names),
        "problem_type": hp.problem_type,
        "model": source.description,
        "world_size": worker.world_size,
        "batch_size": hp.batch_size,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps,
        "steps_per_epoch": per_epoch,
        "total_steps": total,
        "seed": hp.seed,
        "max_seq_length": hp.max_seq_length,
        "truncation": hp.truncation,
    }
    checkpoint_dir = environment.checkpoint_dir(p)
    run = training.prepare(
        hp, worker, loaded.model, encoder, loaded.input_names, label_map, train_set, validation_set,
        checkpoint_dir, identity,
    )  # fmt: skip
    say(
        f"rank {worker.rank}/{worker.world_size}: training on {math.ceil(len(train_set) / worker.world_size)} of "
        f"{len(train_set)} examples per epoch; {per_epoch} steps per epoch, {total} steps in all"
    )
    state = training.fit(run)
    distributed.barrier(worker)
    if not worker.is_main:
        return
    _finish(run, state, hp, datasets, loaded, encoder, p, work, time.monotonic() - started)


def _finish(
    run: TrainingRun,
    state: TrainerState,
    hp: Hyperparameters,
    datasets: data.Datasets,
    loaded: LoadedModel,
    encoder: TextEncoder,
    p: environment.Paths,
    work: Path,
    train_seconds: float,
) -> None:
    """Rank 0: best weights -> final metrics (validation, test) -> HF staging dir -> export -> reports."""
    from textclf import checkpoints, reports
    from textclf.evaluation import compute_metrics, confusion, encode_dataset, metric_lines, predict

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
        if isinstance(exc, UserError) or not (disk_full(exc) or _nearly_full(p.model_dir)):
            raise
        from textclf.checkpoints import write_error

        raise UserError(
            f"{write_error('the model', p.model_dir, exc)}; the fine-tuned weights stay in {run.checkpoint_dir} "
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
    import importlib.util

    if importlib.util.find_spec("textclf.export") is None:
        # The exporter ships separately; until it is installed, keep the fine-tuned weights.
        import shutil

        shutil.copytree(hf_dir, model_dir / "hf", dirs_exist_ok=True)
        say(f"export: textclf.export is not installed; saved the Hugging Face model to {model_dir / 'hf'} only")
        return {}
    from textclf.export import EvalSet, ExportOptions, export_model_dir

    options = ExportOptions(
        precision=hp.export_format,
        per_channel=hp.quantize_per_channel,
        max_accuracy_drop=hp.max_accuracy_drop,
        on_accuracy_drop=hp.on_accuracy_drop,
        keep_full_precision=hp.keep_full_precision,
        max_seq_length=hp.max_seq_length,
        truncation=hp.truncation,
        text_pair=bool(hp.text_pair_column),
        multi_label_threshold=hp.multi_label_threshold,
    )
    validation = datasets.validation
    eval_set = EvalSet(texts=validation.texts, pairs=validation.pairs, labels=datasets.label_map.encode(validation))
    manifest = export_model_dir(hf_dir, model_dir, options, eval_set=eval_set, metrics=metrics, source_model=source)
    say(f"export: {manifest.precision} ONNX model written to {model_dir}")
    return dict(manifest.metrics)
