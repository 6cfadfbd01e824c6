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
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from textclf.contract import opt_ml
from textclf.errors import EXIT_BUG, EXIT_USER_ERROR, StoppedBeforeTrainingError, UserError, exit_code
from textclf.train import data, hyperparameters

_stopped_by: str | None = None  # the signal that asked to stop before training began


def _stop_message(name: str) -> str:
    return (
        f"stopped by {name} before training started; nothing was lost, a rerun starts afresh "
        "(or resumes from the checkpoints already in the checkpoint directory)"
    )


def _stop_at_once(signum: int, _frame: Any) -> None:
    # Replaced by the training loop's own handler (checkpoint at the next step) once training starts.
    global _stopped_by
    _stopped_by = signal.Signals(signum).name
    raise StoppedBeforeTrainingError(_stop_message(_stopped_by))


def raise_if_stopped() -> None:
    """Honour a stop whose exception was swallowed: the handler raises wherever the main thread is,
    and a library that catches every exception there (a tokenizer loader trying its fallbacks)
    would otherwise carry on as if no signal had come. Called at each step of the set-up."""
    if _stopped_by is not None:
        raise StoppedBeforeTrainingError(_stop_message(_stopped_by))


def say(line: str) -> None:
    print(line, flush=True)


def fail(exc: BaseException, p: opt_ml.Paths) -> int:
    """Write the failure file for ``exc`` and return the exit code."""
    code = exit_code(exc)
    if isinstance(exc, UserError):
        reason = str(exc)
    elif disk_full(exc):
        reason, code = f"no space left on device: {type(exc).__name__}: {exc}", EXIT_USER_ERROR
    else:
        reason = f"{type(exc).__name__}: {exc}"
    details = "".join(traceback.format_exception(exc))
    opt_ml.write_failure(reason, details, p)
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


def nearly_full(directory: Path) -> bool:
    """Whether the file system that holds (or would hold) ``directory`` has under 1 MiB free."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        return shutil.disk_usage(directory).free < 1 << 20
    except OSError:
        return False


def main() -> int:
    p = opt_ml.paths()
    signal.signal(signal.SIGTERM, _stop_at_once)
    try:
        hp = hyperparameters.parse(opt_ml.read_hyperparameters(p))
        datasets = data.load(hp, opt_ml.channels(p))
        for name, dataset in (("train", datasets.train), ("validation", datasets.validation), ("test", datasets.test)):
            if dataset is not None:
                say(data.describe(name, dataset, datasets.label_map))
        say(f"data: validation from {datasets.validation_origin}")
        # torch is imported only now, once the input is known to be good: bad data fails in a second.
        from textclf.train import device, distributed, worker

        probe = device.Probe.of_this_host()
        plan = device.choose(hp.device, hp.mixed_precision, probe)
        cluster = distributed.plan(opt_ml.read_resource_config(p), plan)
        say(f"{plan.describe(probe)}; {cluster.procs_per_host} process(es) on each of {len(cluster.hosts)} host(s)")
        with tempfile.TemporaryDirectory(prefix="textclf-host-") as work:
            host = worker.prepare_host(hp, datasets, opt_ml.channels(p), Path(work))
            raise_if_stopped()
            return distributed.launch(cluster, worker.run_worker, cluster, plan, hp, datasets, host)
    except Exception as exc:
        return fail(exc, p)
