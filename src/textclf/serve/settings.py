"""Every knob of ``serve``, read once from the environment into one typed, validated object.

SageMaker configures a serving container only through environment variables: the platform sets
``SAGEMAKER_BIND_TO_PORT`` (pipelines, multi-container endpoints) and, for Batch Transform,
``SAGEMAKER_BATCH`` and ``SAGEMAKER_MAX_PAYLOAD_IN_MB``; the toolkit conventions
(``SAGEMAKER_MODEL_SERVER_WORKERS``, ``SAGEMAKER_MODEL_SERVER_TIMEOUT``, ...) are set by users.
Our own knobs are ``TEXTCLF_*``. A bad value stops ``serve`` with a message naming the variable.

The same object is built in the ``serve`` process (to render nginx.conf and start gunicorn) and in
every gunicorn worker (to build the app); ``serve`` exports the values it resolved (workers,
threads) to the workers, so both sides agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from textclf.contract.cpus import available_cpus
from textclf.contract.opt_ml import DEFAULT_ROOT, ROOT_ENV, Paths
from textclf.errors import ConfigError

DEFAULT_PORT = 8080
DEFAULT_PAYLOAD_MB = 6  # InvokeEndpoint's BodyBlob limit (6291456 bytes) and Batch Transform's default
MAX_PAYLOAD_MB = 100  # CreateTransformJob's maximum MaxPayloadInMB
REALTIME_TIMEOUT_S = 60  # a real-time endpoint answers within 60 s or the client gets a 424
BATCH_TIMEOUT_S = 3600  # ModelClientConfig.InvocationsTimeoutInSeconds can be set up to 3600
REALTIME_MAX_BATCH = 2048  # texts per real-time request; Batch Transform: unlimited (payload bounds it)
# Windows per real-time sliding_window request: as many as texts, since a window costs what a full-length
# text does. Batch Transform: unlimited (its payload, TEXTCLF_MIN_STRIDE and the deadline bound it).
REALTIME_MAX_WINDOWS = REALTIME_MAX_BATCH
# The smallest stride a request may ask for, in tokens: windows over n tokens number about n / stride,
# so stride=1 turns a 6 MB body into millions of windows. 16 keeps a window's overlap useful (a
# 512-token window moves by 3%) while bounding the cost at window/16 times that of truncation.
DEFAULT_MIN_STRIDE = 16
# The request deadline stops inference this long before SAGEMAKER_MODEL_SERVER_TIMEOUT (when nginx
# answers 504 while the worker computes on for nobody), leaving time to answer.
DEADLINE_MARGIN_S = 5.0
DEFAULT_WORKER_THREADS = 4
CLIENT_HEADER_TIMEOUT_S = 10  # nginx: a client that sends its headers slower than this is dropped
CLIENT_BODY_TIMEOUT_S = 30  # nginx: the longest pause between two reads of a request body
DEFAULT_UNCERTAIN_LABEL = "uncertain"
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


# -- parsing helpers ----------------------------------------------------------------------------------
def parse_bool(value: str, name: str) -> bool:
    """Case-insensitive true/false/1/0/yes/no/on/off; anything else names ``name`` in the error."""
    text = value.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (use true or false)")


def _get(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of ``names`` that is set to a non-blank value, as (name, value)."""
    for name in names:
        value = env.get(name)
        if value is not None and value.strip():
            return name, value.strip()
    return None


def _int(env: Mapping[str, str], names: tuple[str, ...], default: int, minimum: int, maximum: int | None = None) -> int:
    found = _get(env, *names)
    if found is None:
        return default
    name, value = found
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer") from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name}={value!r} is out of range: it must be {bounds}")
    return number


def _deadline(env: Mapping[str, str], timeout_s: int, name: str = "TEXTCLF_REQUEST_DEADLINE") -> float:
    """Seconds, above 0 and below the request timeout; by default ``DEADLINE_MARGIN_S`` below it (half
    of it when the timeout is under twice the margin)."""
    found = _get(env, name)
    if found is None:
        return timeout_s - DEADLINE_MARGIN_S if timeout_s >= 2 * DEADLINE_MARGIN_S else timeout_s / 2
    try:
        number = float(found[1])
    except ValueError:
        raise ConfigError(f"{name}={found[1]!r} is not a number of seconds") from None
    if not 0.0 < number < timeout_s:  # also refuses nan
        raise ConfigError(
            f"{name}={found[1]!r} is out of range: it must be above 0 and below the request timeout "
            f"(SAGEMAKER_MODEL_SERVER_TIMEOUT, {timeout_s} s), when nginx gives up on the request"
        )
    return number


def _probability(env: Mapping[str, str], name: str) -> float | None:
    found = _get(env, name)
    if found is None:
        return None
    try:
        number = float(found[1])
    except ValueError:
        raise ConfigError(f"{name}={found[1]!r} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"{name}={found[1]!r} is out of range: it must be between 0 and 1")
    return number


def _label_map(env: Mapping[str, str], name: str = "TEXTCLF_LABEL_MAP") -> dict[str, str]:
    found = _get(env, name)
    if found is None:
        return {}
    try:
        data = json.loads(found[1])
    except json.JSONDecodeError as exc:
        example = '{"LABEL_0": "negative"}'
        raise ConfigError(f"{name} is not valid JSON ({exc}); expected an object like {example}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()):
        raise ConfigError(f"{name} must be a JSON object mapping model labels to non-empty new names")
    return data


@dataclass(frozen=True)
class ServingSettings:
    """Resolved serving configuration; the README's "Serving settings" table lists every variable."""

    model_dir: Path
    port: int = DEFAULT_PORT
    max_payload_mb: int = DEFAULT_PAYLOAD_MB
    batch: bool = False
    workers: int = 1
    intra_op_threads: int = 1
    worker_threads: int = DEFAULT_WORKER_THREADS
    timeout_s: int = REALTIME_TIMEOUT_S
    client_header_timeout_s: int = CLIENT_HEADER_TIMEOUT_S
    client_body_timeout_s: int = CLIENT_BODY_TIMEOUT_S
    max_batch: int = REALTIME_MAX_BATCH  # 0: no limit
    max_windows: int = REALTIME_MAX_WINDOWS  # per sliding_window request; 0: no limit
    min_stride: int = DEFAULT_MIN_STRIDE  # tokens
    request_deadline_s: float = REALTIME_TIMEOUT_S - DEADLINE_MARGIN_S
    batch_size: int = 32
    cache_size: int = 0
    rules: str = ""
    min_confidence: float | None = None
    uncertain_label: str = DEFAULT_UNCERTAIN_LABEL
    label_map: dict[str, str] = field(default_factory=dict)
    default_accept: str = ""
    log_texts: bool = False
    emf: bool = False
    emf_namespace: str = "textclf"
    nginx: str = "nginx"
    nginx_template: str = ""  # empty: the packaged template (the repository's top-level nginx.conf)

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, cpus: int | None = None) -> ServingSettings:
        env = os.environ if env is None else env
        cpus = available_cpus() if cpus is None else cpus
        batch = parse_bool(env.get("SAGEMAKER_BATCH", ""), "SAGEMAKER_BATCH")
        workers = _int(env, ("SAGEMAKER_MODEL_SERVER_WORKERS", "MODEL_SERVER_WORKERS"), cpus, 1, 256)
        # workers x intra-op threads <= cores: oversubscribed ORT thread pools spin against each other.
        threads = _int(env, ("TEXTCLF_INTRA_OP_THREADS",), max(1, cpus // workers), 1, 256)
        timeout = _int(
            env,
            ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", "MODEL_SERVER_TIMEOUT"),
            BATCH_TIMEOUT_S if batch else REALTIME_TIMEOUT_S,
            1,
            BATCH_TIMEOUT_S,
        )
        uncertain = env.get("TEXTCLF_UNCERTAIN_LABEL", "").strip() or DEFAULT_UNCERTAIN_LABEL
        return cls(
            model_dir=Paths(Path(env.get(ROOT_ENV) or DEFAULT_ROOT)).model_dir,
            port=_int(env, ("SAGEMAKER_BIND_TO_PORT",), DEFAULT_PORT, 1, 65535),
            # 0: the transform job may send a body of any size, chunked; this server still bounds what it
            # buffers, at the largest size the API allows otherwise.
            max_payload_mb=_int(env, ("SAGEMAKER_MAX_PAYLOAD_IN_MB",), DEFAULT_PAYLOAD_MB, 0, MAX_PAYLOAD_MB)
            or MAX_PAYLOAD_MB,
            batch=batch,
            workers=workers,
            intra_op_threads=threads,
            worker_threads=_int(env, ("TEXTCLF_WORKER_THREADS",), DEFAULT_WORKER_THREADS, 1, 64),
            timeout_s=timeout,
            client_header_timeout_s=_int(env, ("TEXTCLF_CLIENT_HEADER_TIMEOUT",), CLIENT_HEADER_TIMEOUT_S, 1, 300),
            client_body_timeout_s=_int(env, ("TEXTCLF_CLIENT_BODY_TIMEOUT",), CLIENT_BODY_TIMEOUT_S, 1, 300),
            max_batch=_int(env, ("TEXTCLF_MAX_BATCH",), 0 if batch else REALTIME_MAX_BATCH, 0),
            max_windows=_int(env, ("TEXTCLF_MAX_WINDOWS",), 0 if batch else REALTIME_MAX_WINDOWS, 0),
            min_stride=_int(env, ("TEXTCLF_MIN_STRIDE",), DEFAULT_MIN_STRIDE, 1, 65536),
            request_deadline_s=_deadline(env, timeout),
            batch_size=_int(env, ("TEXTCLF_BATCH_SIZE",), 32, 1, 4096),
            cache_size=_int(env, ("TEXTCLF_CACHE_SIZE",), 0, 0),
            rules=env.get("TEXTCLF_RULES", "").strip(),
            min_confidence=_probability(env, "TEXTCLF_MIN_CONFIDENCE"),
            uncertain_label=uncertain,
            label_map=_label_map(env),
            default_accept=env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "").strip(),
            log_texts=parse_bool(env.get("TEXTCLF_LOG_TEXTS", ""), "TEXTCLF_LOG_TEXTS"),
            emf=parse_bool(env.get("TEXTCLF_EMF", ""), "TEXTCLF_EMF"),
            emf_namespace=env.get("TEXTCLF_EMF_NAMESPACE", "").strip() or "textclf",
            nginx=env.get("TEXTCLF_NGINX", "").strip() or "nginx",
            nginx_template=env.get("TEXTCLF_NGINX_CONF", "").strip(),
        )

    def worker_env(self) -> dict[str, str]:
        """What ``serve`` resolved, for the gunicorn workers' environment (they rebuild settings)."""
        return {
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(self.workers),
            "TEXTCLF_INTRA_OP_THREADS": str(self.intra_op_threads),
            "TEXTCLF_WORKER_THREADS": str(self.worker_threads),
        }
