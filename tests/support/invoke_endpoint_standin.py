"""A local stand-in for SageMaker's ``InvokeEndpoint`` front end, in front of a real container.

Why: ``ops/apigw/handler.py`` maps what boto3's ``sagemaker-runtime`` client raises. Tests with
botocore's Stubber only check that mapping against error dictionaries we wrote ourselves; pointing
the real client (``endpoint_url``, e.g. ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``) at this server makes
botocore serialise, sign, send and *parse* every answer, so the handler sees exactly the exception
objects (classes, ``Error.Code``, top-level modelled fields) it would see against AWS, and the
answers themselves come from the project's real nginx -> gunicorn -> Flask stack.

What it does: ``POST /endpoints/<name>/invocations`` (the ``requestUri`` of operation
``InvokeEndpoint`` in the ``sagemaker-runtime`` service model botocore ships; protocol ``rest-json``,
the body is the raw payload) is forwarded to ``<container>/invocations`` with only ``Content-Type``,
``Accept`` and ``X-Amzn-SageMaker-Custom-Attributes``, and answered as below. Every request is
recorded (``requests``) so tests can check what botocore sent and whether it was forwarded.

Mirrors documented (or widely observed) SageMaker behaviour:

- Request shape: URI, method and header names from botocore's service model (``EndpointName`` in the
  URI, ``ContentType``/``Accept``/``CustomAttributes`` as headers, ``Body`` the payload, at most
  6291456 bytes: ``BodyBlob`` max). SageMaker forwards only the headers InvokeEndpoint supports
  (SageMaker docs, "Use Your Own Inference Code with Hosting Services").
- 200 answers carry the container's body, ``Content-Type`` and ``X-Amzn-SageMaker-Custom-Attributes``,
  plus ``x-Amzn-Invoked-Production-Variant`` (header names from the model's ``InvokeEndpointOutput``).
- A container 4xx/5xx becomes HTTP 424 ``ModelError`` with members ``OriginalStatusCode``,
  ``OriginalMessage``, ``LogStreamArn`` (service model) and a ``Message`` of the form
  ``Received client error (400) from primary with message "<body>". See https://<region>.console.
  aws.amazon.com/cloudwatch/home?region=<region>#logEventViewer:group=/aws/sagemaker/Endpoints/<name>
  in account <id> for more information.`` (``server error (500)`` for 5xx); this text is quoted in
  many public reports, e.g. aws/amazon-sagemaker-examples#1881, #407, aws/sagemaker-python-sdk#2955.
  Body keys ``ErrorCode`` (``CLIENT_ERROR_FROM_MODEL``), ``LogStreamArn``
  (``arn:aws:logs:<region>:<id>:log-group:/aws/sagemaker/Endpoints/<name>``), ``Message``,
  ``OriginalMessage``, ``OriginalStatusCode`` as seen in captured raw 424 bodies.
- A container that does not answer within 60 s (here: ``container_timeout_s``) becomes
  ``ModelError`` ``Received server error (0) from primary with message "Your invocation timed out
  while waiting for a response from container primary. Review the latency metrics for each container
  in Amazon CloudWatch, resolve the issue, and try again."`` (SageMaker troubleshooting docs and
  amazon-sagemaker-examples#799).
- An unknown endpoint is ``ValidationError`` 400 ``Endpoint <name> of account <id> not found.``
- Error codes and HTTP statuses of ``ValidationError`` (400), ``ModelNotReadyException`` (429),
  ``ServiceUnavailable`` (503), ``InternalFailure`` (500) are the service model's.

Our reading (not documented; chosen to match what botocore's parser accepts):

- The error code travels in the ``x-amzn-ErrorType`` header as ``Code:<namespace>``: the captured
  424 bodies carry no ``__type``/``code`` key, and botocore's ``RestJSONParser._inject_error_code``
  takes the code from that header first (otherwise it would fall back to the bare status "424" and
  no ``ModelError`` class would be raised), splitting off everything after ``:``.
- ``OriginalMessage`` of the timeout ModelError is the quoted timeout text; ``ErrorCode`` of a 5xx or
  timeout is ``SERVER_ERROR_FROM_MODEL``; generic error bodies are ``{"Message": ...}``; a request id
  is sent as ``x-amzn-RequestId``.
- A body over 6291456 bytes is ``ValidationError`` 400 ``Request <id> has oversize body.``, as
  serverless endpoints answer (aws/sagemaker-python-sdk#4271); real-time endpoints were seen in 2018
  answering a bare 413 ``HTTP content length exceeded 5246976 bytes`` (sagemaker-python-sdk#171).
- ``ThrottlingException`` (the generic AWS code, not in this service's model) is sent with the status
  the test picks (400 or 429), as other AWS JSON services do.
- SigV4 is not verified, only that the request carries an ``Authorization`` header.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY_BYTES = 6291456  # botocore sagemaker-runtime: BodyBlob max
FORWARDED_HEADERS = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.sagemaker.runtime/"
ACCOUNT = "123456789012"
VARIANT = "AllTraffic"
CONTAINER = "primary"
TIMEOUT_MESSAGE = (
    f"Your invocation timed out while waiting for a response from container {CONTAINER}. "
    "Review the latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)
_PATH = re.compile(r"^/endpoints/(?P<name>[^/?]+)/invocations$")


@dataclass(frozen=True)
class Reply:
    """One HTTP answer of the stand-in."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """One request as botocore sent it, and what the stand-in did with it."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body_bytes: int
    forwarded: bool = False
    container_status: int | None = None  # None: not forwarded, 0: the container timed out
    container_body: bytes = b""
    reply: Reply | None = None


def error_reply(code: str, status: int, message: str, **members: Any) -> Reply:
    """A rest-json error as botocore parses it: code in ``x-amzn-ErrorType``, members in the body."""
    body = json.dumps({"Message": message, **members}).encode()
    headers = {"x-amzn-ErrorType": f"{code}:{ERROR_NAMESPACE}", "Content-Type": "application/json"}
    return Reply(status, body, headers)


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (its read timeout, in the timeout tests) resets the connection while a
    handler still writes: expected here, so not printed as a traceback into other tests' stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class InvokeEndpointStandIn:
    """``InvokeEndpoint`` on ``127.0.0.1:<port>`` for endpoint ``endpoint_name``, forwarding to
    ``container_url`` (``http://host:port``). Use as a context manager, or ``start()``/``stop()``."""

    def __init__(
        self,
        container_url: str,
        endpoint_name: str,
        region: str,
        container_timeout_s: float = 60.0,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.region = region
        self.container_timeout_s = container_timeout_s
        parsed = re.match(r"^http://(?P<host>[^:/]+):(?P<port>\d+)/?$", container_url)
        if parsed is None:
            raise ValueError(f"container_url must be http://host:port, got {container_url!r}")
        self._container = (parsed["host"], int(parsed["port"]))
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._injected: Reply | None = None
        self._server = _QuietServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="invoke-endpoint-standin", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> InvokeEndpointStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> InvokeEndpointStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def answering(self, reply: Reply) -> Iterator[None]:
        """Answer every request with ``reply`` (nothing is forwarded) while the block runs: how
        SageMaker's own errors (throttling, model not ready, ...) are produced."""
        self._injected = reply
        try:
            yield
        finally:
            self._injected = None

    def seen_since(self, mark: int) -> list[Seen]:
        with self._lock:
            return self.requests[mark:]

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    # -- SageMaker's answers ----------------------------------------------------------------------------
    def request_id(self) -> str:
        return str(uuid.uuid4())

    def log_stream_arn(self) -> str:
        return f"arn:aws:logs:{self.region}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{self.endpoint_name}"

    def model_error(self, original_status: int, original_message: str) -> Reply:
        """What the caller gets when the container answered ``original_status`` (0: timed out)."""
        kind = "client" if 400 <= original_status < 500 else "server"
        console = (
            f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region={self.region}"
            f"#logEventViewer:group=/aws/sagemaker/Endpoints/{self.endpoint_name}"
        )
        message = (
            f'Received {kind} error ({original_status}) from {CONTAINER} with message "{original_message}". '
            f"See {console} in account {ACCOUNT} for more information."
        )
        return error_reply(
            "ModelError",
            424,
            message,
            ErrorCode="CLIENT_ERROR_FROM_MODEL" if kind == "client" else "SERVER_ERROR_FROM_MODEL",
            LogStreamArn=self.log_stream_arn(),
            OriginalMessage=original_message,
            OriginalStatusCode=original_status,
        )

    def _answer(self, seen: Seen, name: str, body: bytes) -> Reply:
        if self._injected is not None:
            return self._injected
        if name != self.endpoint_name:
            return error_reply("ValidationError", 400, f"Endpoint {name} of account {ACCOUNT} not found.")
        if len(body) > MAX_BODY_BYTES:
            return error_reply("ValidationError", 400, f"Request {self.request_id()} has oversize body.")
        headers = {h: seen.headers[h.lower()] for h in FORWARDED_HEADERS if h.lower() in seen.headers}
        seen.forwarded = True
        connection = http.client.HTTPConnection(*self._container, timeout=self.container_timeout_s)
        try:
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except TimeoutError:  # socket.timeout is TimeoutError
            seen.container_status = 0
            return self.model_error(0, TIMEOUT_MESSAGE)
        finally:
            connection.close()
        seen.container_status, seen.container_body = response.status, payload
        if response.status >= 400:
            return self.model_error(response.status, payload.decode("utf-8", errors="replace"))
        out = {
            "Content-Type": response.getheader("Content-Type") or "application/octet-stream",
            "x-Amzn-Invoked-Production-Variant": VARIANT,
        }
        attributes = response.getheader(CUSTOM_ATTRIBUTES)
        if attributes is not None:
            out[CUSTOM_ATTRIBUTES] = attributes
        return Reply(200, payload, out)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        seen = Seen(path, headers, len(body))
        with self._lock:
            self.requests.append(seen)
        match = _PATH.match(path)
        if match is None:
            reply = error_reply("UnknownOperationException", 404, f"no operation at {path}")
        elif "authorization" not in headers:
            reply = error_reply("MissingAuthenticationTokenException", 403, "Missing Authentication Token")
        else:
            reply = self._answer(seen, match["name"], body)
        seen.reply = reply
        return reply


def _handler_class(standin: InvokeEndpointStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)  # read even an oversize body: the client sends it whole
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = standin.handle(self.path, headers, body)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            # The client may have given up already (its read timeout): nobody is left to tell.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(reply.status)
                for name, value in {"x-amzn-RequestId": standin.request_id(), **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
