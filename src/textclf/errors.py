"""Errors a user can cause, each carrying a one-line human reason.

Training turns a ``UserError`` into the first line of ``/opt/ml/output/failure``; serving turns a
``RequestError`` into a 4xx JSON body. Anything else is a bug.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(err)`` is the one-line reason."""


class ConfigError(UserError):
    """A bad hyperparameter, configuration file or environment variable."""


class DataError(UserError):
    """A missing channel, unreadable file, missing column, bad row or label."""


class ModelLoadError(UserError):
    """The pretrained model or tokenizer could not be found or loaded."""


class ArtifactError(UserError):
    """A model directory is incomplete, tampered with or of an unknown format."""


class QualityGateError(UserError):
    """The quantized model lost more accuracy than allowed."""


class RequestError(UserError):
    """A bad inference request; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
