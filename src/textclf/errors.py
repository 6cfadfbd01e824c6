"""Errors a user can cause, each carrying a one-line human reason, and what each one exits or answers with.

Training turns a ``UserError`` into the first line of ``/opt/ml/output/failure`` and exit status
``EXIT_USER_ERROR`` (a stop by SIGTERM: ``EXIT_STOPPED``); serving turns a ``RequestError`` into a
4xx JSON body with its ``status``. Anything else is a bug: exit ``EXIT_BUG``, or HTTP 500.
"""

from __future__ import annotations

# Exit statuses of ``textclf train|export|predict`` (SageMaker only tells zero from non-zero; these
# tell a person or a script why).
EXIT_OK = 0
EXIT_BUG = 1  # an unexpected error: the failure file starts with ``ExceptionType: message``
EXIT_USER_ERROR = 2  # data, hyperparameters, model, checkpoint, a full disk: the failure file says which
EXIT_STOPPED = 143  # 128 + SIGTERM: stopped (after a checkpoint, once training has begun)


class UserError(Exception):
    """A problem the user can fix; ``str(err)`` is the one-line reason."""


class ConfigError(UserError):
    """A bad hyperparameter, configuration file or environment variable."""


class DataError(UserError):
    """A missing channel, unreadable file, missing column, bad row or label."""


class ModelLoadError(UserError):
    """The pretrained model or tokenizer could not be found or loaded."""


class UnsupportedModelError(ModelLoadError):
    """The pretrained model is of a family textclf cannot fine-tune, export or serve (``textclf.train.families``)."""


class ArtifactError(UserError):
    """A model directory is incomplete, tampered with or of an unknown format."""


class QualityGateError(UserError):
    """The quantized model lost more accuracy than allowed."""


class CheckpointError(UserError):
    """A checkpoint could not be written, or does not belong to this run."""


class StoppedError(UserError):
    """The job was stopped by a signal (``EXIT_STOPPED``); what was saved is in the message."""


class StoppedBeforeTrainingError(StoppedError):
    """SIGTERM before the training loop began: there is nothing to checkpoint, so stop at once."""


class TrainingStoppedError(StoppedError):
    """Training stopped on SIGTERM after saving a checkpoint; a rerun resumes from it."""


class RequestError(UserError):
    """A bad inference request; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RuleRejection(RequestError):  # noqa: N818 (the documented hook API name)
    """Raised by a business-rule hook to refuse a request: the client gets ``status`` (4xx) and ``message``."""

    def __init__(self, message: str, status: int = 400) -> None:
        if not isinstance(status, int) or not 400 <= status <= 499:
            raise ValueError(f"RuleRejection status must be a 4xx code, got {status!r}")
        super().__init__(message, status)


def exit_code(exc: BaseException) -> int:
    """The exit status a job ends with when ``exc`` stops it."""
    if isinstance(exc, StoppedError):
        return EXIT_STOPPED
    return EXIT_USER_ERROR if isinstance(exc, UserError) else EXIT_BUG
