"""Loading what ``serve`` serves, one way for the supervisor and for every gunicorn worker.

``textclf serve`` calls ``load`` before any worker starts (without an ONNX Runtime session: the
supervisor never runs the model), so a tampered model, a broken hook or a bad setting stops it
with one line and exit 2. The verification covers ``code/``: its hooks run with the endpoint's
permissions, so a hook that is not listed in the manifest with its sha256 (planted by a tampered
archive, or edited and not yet re-sealed with ``textclf seal``) is refused before it is imported.
Each worker calls ``load`` again, session included, after the fork (ORT sessions do not survive
one). A worker that fails writes its reason to the file named by ``FAILURE_FILE_ENV``, because
gunicorn only says that a worker failed to boot; the supervisor reads that file and stops
``serve`` with the same one line.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from textclf.contract.model_dir import CODE_DIR, Manifest, read_manifest
from textclf.errors import ConfigError, UserError
from textclf.serve import codecs
from textclf.serve.rules import DeclarativeRules, RuleSet
from textclf.serve.service import Model
from textclf.serve.settings import ServingSettings

FAILURE_FILE_ENV = "TEXTCLF_WORKER_FAILURE_FILE"  # set by the supervisor for its gunicorn workers


@dataclass(frozen=True)
class Loaded:
    """A verified model directory and what serves it."""

    manifest: Manifest
    rules: RuleSet
    default_accept: str  # the checked SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, or ""
    model: Model | None  # None when loaded without a session (the supervisor)

    @property
    def model_version(self) -> str:
        """The first 12 hex digits of model.onnx's sha256: which model answered."""
        return str(self.manifest.files.get("model.onnx", ""))[:12]

    def summary(self, settings: ServingSettings) -> str:
        return (
            f"model {settings.model_dir} verified ({len(self.manifest.labels)} labels, {self.manifest.problem_type}, "
            f"{self.manifest.precision}); rules: {', '.join(self.rules.sources) or 'none'}"
        )


def load(
    settings: ServingSettings, *, session: bool = True, model: Model | None = None, rules: RuleSet | None = None
) -> Loaded:
    """Verify the model directory (format, sha256 of every file), load the rules and, with ``session``,
    the model itself; ``model`` and ``rules`` replace what would be loaded (tests, embedding)."""
    supplied = model is not None  # not loaded (so not verified) from settings.model_dir here
    try:
        default_accept = _default_accept(settings)
        if model is None and session:
            # onnxruntime is imported only where a model runs: the supervisor never pays for it.
            from textclf.model.predictor import Classifier

            model = Classifier.load(
                settings.model_dir, threads=settings.intra_op_threads, verify=True, cache_size=settings.cache_size
            )
        manifest = model.manifest if model is not None else read_manifest(settings.model_dir, verify=True)
        if rules is None:
            if supplied and (settings.model_dir / CODE_DIR).exists():
                read_manifest(settings.model_dir, verify=True)  # its hooks are about to run: sealed ones only
            declarative = DeclarativeRules(settings.min_confidence, settings.uncertain_label, settings.label_map)
            rules = RuleSet.load(settings.model_dir, manifest.labels, settings.rules, declarative)
    except UserError as exc:
        _report_worker_failure(str(exc))
        raise
    return Loaded(manifest, rules, default_accept, model)


def _default_accept(settings: ServingSettings) -> str:
    if not settings.default_accept:
        return ""
    try:
        return codecs.response_type(settings.default_accept)
    except ValueError as exc:
        raise ConfigError(f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: {exc}") from None


def _report_worker_failure(reason: str) -> None:
    if failure_file := os.environ.get(FAILURE_FILE_ENV, ""):
        with contextlib.suppress(OSError):
            Path(failure_file).write_text(reason, encoding="utf-8")


def read_worker_failure(failure_file: Path) -> str:
    """What a worker that could not load wrote (empty when none did)."""
    with contextlib.suppress(OSError):
        return failure_file.read_text(encoding="utf-8").strip()
    return ""
