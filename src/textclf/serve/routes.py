"""The HTTP routes: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``, and error pages.

A Flask blueprint; every handler finds what it serves through ``served()`` (the app's
``extensions["textclf"]``, set by ``textclf.serve.app.create_app``), so a route can be read, and
tested, alone. Every answer, errors included, is JSON (or the requested body type); a 5xx carries a
request id and is logged with its traceback. Bodies are described in ``textclf.serve.codecs``,
parameters and rules in ``textclf.serve.service`` and ``textclf.serve.rules``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.sansio.utils import get_content_length

from textclf.errors import RequestError
from textclf.serve import codecs
from textclf.serve.request_log import RequestLog
from textclf.serve.service import (
    InferenceService,
    Limits,
    Usage,
    format_custom_attributes,
    parse_custom_attributes,
)
from textclf.serve.settings import ServingSettings

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
REQUEST_ID = "X-Request-Id"
ROUTES = "GET /ping, POST /invocations and GET /execution-parameters"
_REQUEST_ID_ENV = "HTTP_X_REQUEST_ID"  # the WSGI environ's names of those headers
_ATTRIBUTES_ENV = "HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
logger = logging.getLogger("textclf.serve.app")
blueprint = Blueprint("textclf", __name__)


@dataclass(frozen=True)
class Served:
    """What one worker's routes work with."""

    service: InferenceService
    settings: ServingSettings
    request_log: RequestLog
    default_accept: str
    model_info: dict[str, str]  # model_version and model_created_at, in /ping and every log record

    @cached_property
    def limits(self) -> Limits:
        """What one request may cost, from the settings (TEXTCLF_MAX_WINDOWS, _MIN_STRIDE, _REQUEST_DEADLINE)."""
        s = self.settings
        return Limits(max_windows=s.max_windows, min_stride=s.min_stride, deadline_s=s.request_deadline_s)


def served() -> Served:
    return current_app.extensions["textclf"]


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(codecs.encode([value], True, codecs.JSON), status=status, content_type=codecs.JSON)


def error_response(status: int, message: str) -> Response:
    state = _state()
    if state is None:  # start() never ran: the log line still gets the error
        state = g.state = _new_state("")
    state.error = message
    body = {"error": {"code": status, "message": message, "request_id": state.request_id}}
    return _json_response(body, status)


# -- around every request ----------------------------------------------------------------------------
# The hooks read the WSGI environ and keep a request's state in one object: each access to Flask's
# context-local ``request`` or ``g`` is a proxy lookup, and the single-text request's profile showed
# dozens of them (bench/results/request-breakdown.md).
@dataclass(slots=True)
class RequestState:
    """One request's own figures, from its arrival to its log line (``g.state``)."""

    request_id: str
    started: float  # perf_counter, for the latency
    arrived: float  # monotonic: the request deadline counts from here
    # thread_time: this request's thread only (process_time sums every thread of the gthread
    # worker, and its clock is slow enough to show up in profiles). ORT pool threads are not counted.
    cpu: float
    usage: Usage = field(default_factory=Usage)
    texts: int = 0
    input_texts: list[str] | None = None  # only with TEXTCLF_LOG_TEXTS
    error: str | None = None


def _state() -> RequestState | None:
    return g.get("state")


def _new_state(request_id: str) -> RequestState:
    return RequestState(request_id, time.perf_counter(), time.monotonic(), time.thread_time())


@blueprint.before_app_request
def start() -> None:
    given = request.environ.get(_REQUEST_ID_ENV, "")
    g.state = _new_state(given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex)


@blueprint.after_app_request
def finish(response: Response) -> Response:
    # No state: start() never ran (a failure before it); the line then says so with zeros.
    state, environ = _state() or _new_state(""), request.environ
    headers = response.headers
    headers[REQUEST_ID] = state.request_id
    if (attributes := environ.get(_ATTRIBUTES_ENV)) is not None and CUSTOM_ATTRIBUTES not in headers:
        headers[CUSTOM_ATTRIBUTES] = attributes
    path = request.path
    if path == "/ping" and response.status_code == 200:
        return response  # health checks every few seconds would drown the log
    now, cpu_now = time.perf_counter(), time.thread_time()
    this = served()
    record: dict[str, Any] = {
        "request_id": state.request_id,
        "method": environ.get("REQUEST_METHOD", ""),
        "path": path,
        "status": response.status_code,
        "latency_ms": round((now - state.started) * 1000, 2),
        "cpu_ms": round((cpu_now - state.cpu) * 1000, 2),
        "texts": state.texts,
        "model_inputs": state.usage.model_inputs,
        "bytes_in": get_content_length(environ.get("CONTENT_LENGTH"), environ.get("HTTP_TRANSFER_ENCODING")) or 0,
        "content_type": environ.get("CONTENT_TYPE", ""),
        "accept": environ.get("HTTP_ACCEPT", ""),
        "model_created_at": this.model_info["model_created_at"],
    }
    if state.error is not None:
        record["error"] = state.error
    log, texts = this.request_log, state.input_texts
    # Written once the server has sent the answer (it closes the body then), not before: the line
    # holds nothing that sending changes, and the client need not wait for it.
    response.call_on_close(lambda: log.write(record, texts))
    return response


# -- routes -------------------------------------------------------------------------------------------
@blueprint.get("/ping")
def ping() -> Response:
    return _json_response({"status": "healthy", **served().model_info})


@blueprint.get("/execution-parameters")
def execution_parameters() -> Response:
    settings = served().settings
    return _json_response(
        {
            "MaxConcurrentTransforms": settings.workers,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": settings.max_payload_mb,
        }
    )


@blueprint.post("/invocations")
def invocations() -> Response:
    this, state, environ = served(), g.state, request.environ
    media = codecs.request_type(environ.get("CONTENT_TYPE"))
    accept = codecs.negotiate(environ.get("HTTP_ACCEPT"), media, this.default_accept)
    inputs = codecs.decode(request.get_data(cache=False), media)
    state.texts = len(inputs.texts)
    if this.settings.log_texts:
        state.input_texts = inputs.texts
    attributes = parse_custom_attributes(environ.get(_ATTRIBUTES_ENV))
    results, context = this.service.invoke(
        inputs, attributes, state.request_id, limits=this.limits, started=state.arrived, usage=state.usage
    )
    body = codecs.encode(results, inputs.single, accept, last_newline=not this.settings.batch)
    response = Response(body, content_type=codecs.content_type_header(accept))
    if context.response_attributes != attributes:
        echoed = format_custom_attributes(context.response_attributes)
        if len(echoed) > 1024 or not (echoed.isascii() and echoed.isprintable()):
            raise ValueError("rules set response_attributes that are not at most 1024 printable ASCII characters")
        response.headers[CUSTOM_ATTRIBUTES] = echoed
    return response


# -- errors as JSON -----------------------------------------------------------------------------------
@blueprint.app_errorhandler(RequestError)
def request_error(exc: RequestError) -> Response:
    return error_response(exc.status, str(exc))


@blueprint.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 404:
        message = f"no route {request.path}: this server answers {ROUTES}"
    elif isinstance(exc, MethodNotAllowed):
        allowed = ", ".join(sorted(exc.valid_methods or []))
        message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    elif status == 413:
        limit = served().settings.max_payload_mb
        message = f"the request body exceeds {limit} MB (SAGEMAKER_MAX_PAYLOAD_IN_MB): split the request"
    else:
        message = exc.description or exc.name
    response = error_response(status, message)
    if isinstance(exc, MethodNotAllowed):
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods or []))
    return response


@blueprint.app_errorhandler(Exception)
def server_error(exc: Exception) -> Response:
    state = _state()
    request_id = state.request_id if state is not None else ""
    logger.exception("request %s failed: %s", request_id, exc)
    return error_response(500, f"internal error; the server log has the details under request id {request_id}")
