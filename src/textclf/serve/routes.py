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
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

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

    @property
    def limits(self) -> Limits:
        """What one request may cost, from the settings (TEXTCLF_MAX_WINDOWS, _MIN_STRIDE, _REQUEST_DEADLINE)."""
        s = self.settings
        return Limits(max_windows=s.max_windows, min_stride=s.min_stride, deadline_s=s.request_deadline_s)


def served() -> Served:
    return current_app.extensions["textclf"]


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(codecs.encode([value], True, codecs.JSON), status=status, content_type=codecs.JSON)


def error_response(status: int, message: str) -> Response:
    g.error = message
    body = {"error": {"code": status, "message": message, "request_id": g.get("request_id", "")}}
    return _json_response(body, status)


# -- around every request ----------------------------------------------------------------------------
@blueprint.before_app_request
def start() -> None:
    given = request.headers.get(REQUEST_ID, "")
    g.request_id = given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
    g.started = time.perf_counter()
    g.arrived = time.monotonic()  # the request deadline counts from here (perf_counter is for latency only)
    g.usage = Usage()
    # thread_time: this request's thread only (process_time sums every thread of the gthread
    # worker, and its clock is slow enough to show up in profiles). ORT pool threads are not counted.
    g.cpu = time.thread_time()
    g.texts = 0


@blueprint.after_app_request
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
        "model_inputs": usage.model_inputs if (usage := g.get("usage")) is not None else 0,
        "bytes_in": request.content_length or 0,
        "content_type": request.headers.get("Content-Type", ""),
        "accept": request.headers.get("Accept", ""),
        "model_created_at": served().model_info["model_created_at"],
    }
    if "error" in g:
        record["error"] = g.error
    served().request_log.write(record, g.get("input_texts"))
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
    state = served()
    media = codecs.request_type(request.headers.get("Content-Type"))
    accept = codecs.negotiate(request.headers.get("Accept"), media, state.default_accept)
    inputs = codecs.decode(request.get_data(cache=False), media)
    g.texts = len(inputs.texts)
    if state.settings.log_texts:
        g.input_texts = inputs.texts
    attributes = parse_custom_attributes(request.headers.get(CUSTOM_ATTRIBUTES))
    results, context = state.service.invoke(
        inputs, attributes, g.request_id, limits=state.limits, started=g.arrived, usage=g.usage
    )
    body = codecs.encode(results, inputs.single, accept, last_newline=not state.settings.batch)
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
    logger.exception("request %s failed: %s", g.get("request_id", ""), exc)
    return error_response(500, f"internal error; the server log has the details under request id {g.request_id}")
