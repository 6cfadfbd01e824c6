"""The Flask application factory: gunicorn calls ``create_app()`` in every worker after the fork.

Each worker loads (and verifies) the model and builds its own ONNX Runtime session before it
accepts a request (``textclf.serve.startup``), so a worker that answers ``/ping`` has its model
loaded. The routes live in ``textclf.serve.routes``.
"""

from __future__ import annotations

import logging
import sys

from flask import Flask

from textclf.serve import routes, startup
from textclf.serve.request_log import RequestLog
from textclf.serve.rules import RuleSet
from textclf.serve.service import InferenceService, Model
from textclf.serve.settings import ServingSettings

logger = logging.getLogger("textclf.serve.app")


def _log_to_stderr() -> None:
    package = logging.getLogger("textclf")
    if not package.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)


def create_app(
    settings: ServingSettings | None = None, *, model: Model | None = None, rules: RuleSet | None = None
) -> Flask:
    """Build the app; without ``model``, load and verify ``settings.model_dir`` (the worker's path)."""
    settings = settings or ServingSettings.from_env()
    _log_to_stderr()
    loaded = startup.load(settings, model=model, rules=rules)
    assert loaded.model is not None  # load() with a session always returns one
    service = InferenceService(
        loaded.model,
        loaded.rules,
        max_batch=settings.max_batch,
        batch_size=settings.batch_size,
        exclusive=settings.intra_op_threads > 1,
    )
    info = {"model_version": loaded.model_version, "model_created_at": str(loaded.manifest.created_at)}
    request_log = RequestLog(
        info["model_version"], log_texts=settings.log_texts, emf=settings.emf, namespace=settings.emf_namespace
    )
    app = Flask(__name__)
    app.debug = False  # never, whatever FLASK_DEBUG says: no debugger, no tracebacks in answers
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes  # nginx enforces it first
    app.extensions["textclf"] = routes.Served(service, settings, request_log, loaded.default_accept, info)
    app.register_blueprint(routes.blueprint)
    logger.info(
        "worker ready: model %s (%s labels, %s), rules: %s",
        info["model_version"],
        len(loaded.manifest.labels),
        loaded.manifest.problem_type,
        ", ".join(loaded.rules.sources) or "none",
    )
    return app
