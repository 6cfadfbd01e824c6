"""The Flask application: routes and error pages, nothing else.

gunicorn calls ``create_app()`` in every worker after the fork, so each worker loads (and
verifies) the model and builds its own ONNX Runtime session before it accepts a request: a
worker that answers ``/ping`` has its model loaded. Every answer, errors included, is JSON (or
the requested body type); a 5xx carries a request id and is logged with its traceback.

Routes: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``. Bodies are
described in ``textclf.codecs``, parameters and rules in ``textclf.service`` and ``textclf.rules``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from textclf import codecs
from textclf.errors import ConfigError, RequestError, UserError
from textclf.request_log import RequestLog
from textclf.rules import DeclarativeRules, RuleSet
from textclf.service import InferenceService, format_custom_attributes, parse_custom_attributes
from textclf.serving_settings import ServingSettings

FAILURE_FILE_ENV = "TEXTCLF_WORKER_FAILURE_FILE"  # set by textclf.server
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
REQUEST_ID = "X-Request-Id"
ROUTES = "GET /ping, POST /invocations and GET /execution-parameters"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
logger = logging.getLogger("textclf.app")


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(codecs.encode([value], True, codecs.JSON), status=status, content_type=codecs.JSON)


def error_response(status: int, message: str) -> Response:
    g.error = message
    body = {"error": {"code": status, "message": message, "request_id": g.get("request_id", "")}}
    return _json_response(body, status)


def _model_info(manifest: Any) -> dict[str, str]:
    return {
        "model_version": str(manifest.files.get("model.onnx", ""))[:12],
        "model_created_at": str(manifest.created_at),
    }


def create_app(settings: ServingSettings | None = None, *, model: Any = None, rules: RuleSet | None = None) -> Flask:
    """Build the app; without ``model``, load and verify ``settings.model_dir`` (the worker's path)."""
    settings = settings or ServingSettings.from_env()
    if not logging.getLogger("textclf").handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        logging.getLogger("textclf").addHandler(handler)
        logging.getLogger("textclf").setLevel(logging.INFO)
    try:
        default_accept = codecs.response_type(settings.default_accept) if settings.default_accept else ""
    except ValueError as exc:
        raise ConfigError(f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: {exc}") from None
    try:
        if model is None:
            from textclf.predictor import Classifier  # imports onnxruntime: only where a model is served

            model = Classifier.load(
                settings.model_dir, threads=settings.intra_op_threads, verify=True, cache_size=settings.cache_size
            )
        manifest = model.manifest
        if rules is None:
            declarative = DeclarativeRules(settings.min_confidence, settings.uncertain_label, settings.label_map)
            rules = RuleSet.load(settings.model_dir, manifest.labels, settings.rules, declarative)
    except UserError as exc:  # serve stops with this line (gunicorn halts when a worker cannot boot)
        failure_file = os.environ.get(FAILURE_FILE_ENV, "")
        if failure_file:
            with contextlib.suppress(OSError):
                Path(failure_file).write_text(str(exc), encoding="utf-8")
        raise
    service = InferenceService(
        model,
        rules,
        text_pair=manifest.text_pair,
        max_batch=settings.max_batch,
        batch_size=settings.batch_size,
        exclusive=settings.intra_op_threads > 1,
    )
    info = _model_info(manifest)
    log = RequestLog(
        info["model_version"],
        log_texts=settings.log_texts,
        emf=settings.emf,
        namespace=settings.emf_namespace,
    )

    app = Flask(__name__)
    app.debug = False  # never, whatever FLASK_DEBUG says: no debugger, no tracebacks in answers
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes  # nginx enforces it first
    app.extensions["textclf"] = service

    @app.before_request
    def start() -> None:
        given = request.headers.get(REQUEST_ID, "")
        g.request_id = given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        g.started = time.perf_counter()
        # thread_time: this request's thread only (process_time sums every thread of the gthread
        # worker, and its clock is slow enough to show up in profiles). ORT pool threads are not counted.
        g.cpu = time.thread_time()
        g.texts = 0

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers[REQUEST_ID] = g.get("request_id", "")
        if CUSTOM_ATTRIBUTES in request.headers and CUSTOM_ATTRIBUTES not in response.headers:
            response.headers[CUSTOM_ATTRIBUTES] = request.headers[CUSTOM_ATTRIBUTES]
        if request.path == "/ping" and response.status_code == 200:
            return response  # health checks every few seconds would drown the log
        now, cpu_now = time.perf_counter(), time.thread_time()
        record: dict[str, Any] = {
            "request_id": g.get("request_id", ""),
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "latency_ms": round((now - g.get("started", now)) * 1000, 2),
            "cpu_ms": round((cpu_now - g.get("cpu", cpu_now)) * 1000, 2),
            "texts": g.get("texts", 0),
            "bytes_in": request.content_length or 0,
            "content_type": request.headers.get("Content-Type", ""),
            "accept": request.headers.get("Accept", ""),
            "model_created_at": info["model_created_at"],
        }
        if "error" in g:
            record["error"] = g.error
        log.write(record, g.get("input_texts"))
        return response

    @app.get("/ping")
    def ping() -> Response:
        return _json_response({"status": "healthy", **info})

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        return _json_response(
            {
                "MaxConcurrentTransforms": settings.workers,
                "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": settings.max_payload_mb,
            }
        )

    @app.post("/invocations")
    def invocations() -> Response:
        media = codecs.request_type(request.headers.get("Content-Type"))
        accept = codecs.negotiate(request.headers.get("Accept"), media, default_accept)
        inputs = codecs.decode(request.get_data(cache=False), media)
        g.texts = len(inputs.texts)
        if settings.log_texts:
            g.input_texts = inputs.texts
        attributes = parse_custom_attributes(request.headers.get(CUSTOM_ATTRIBUTES))
        results, context = service.invoke(inputs, attributes, g.request_id)
        body = codecs.encode(results, inputs.single, accept)
        response = Response(body, content_type=codecs.content_type_header(accept))
        if context.response_attributes != attributes:
            echoed = format_custom_attributes(context.response_attributes)
            if len(echoed) > 1024 or not (echoed.isascii() and echoed.isprintable()):
                raise ValueError("rules set response_attributes that are not at most 1024 printable ASCII characters")
            response.headers[CUSTOM_ATTRIBUTES] = echoed
        return response

    @app.errorhandler(RequestError)
    def request_error(exc: RequestError) -> Response:
        return error_response(exc.status, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 404:
            message = f"no route {request.path}: this server answers {ROUTES}"
        elif isinstance(exc, MethodNotAllowed):
            allowed = ", ".join(sorted(exc.valid_methods or []))
            message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
        elif status == 413:
            limit = settings.max_payload_mb
            message = f"the request body exceeds {limit} MB (SAGEMAKER_MAX_PAYLOAD_IN_MB): split the request"
        else:
            message = exc.description or exc.name
        response = error_response(status, message)
        if isinstance(exc, MethodNotAllowed):
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods or []))
        return response

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> Response:
        logger.exception("request %s failed: %s", g.get("request_id", ""), exc)
        return error_response(500, f"internal error; the server log has the details under request id {g.request_id}")

    logger.info(
        "worker ready: model %s (%s labels, %s), rules: %s",
        info["model_version"],
        len(manifest.labels),
        manifest.problem_type,
        ", ".join(rules.sources) or "none",
    )
    return app
