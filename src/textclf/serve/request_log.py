"""One JSON line per request on stdout, optionally with CloudWatch Embedded Metric Format.

A line holds the request id (nginx's, also sent back as ``X-Request-Id``), method, path,
status, latency, the number of texts and of model inputs classified (``model_inputs``: texts, or
their windows with ``sliding_window``; 0 for a request refused before the model ran), the content
types, the model version and, for errors, the message. It never holds the texts themselves
unless ``TEXTCLF_LOG_TEXTS=true`` (they may be personal data), nor headers or custom attributes
(they may carry secrets).

With ``TEXTCLF_EMF=true``, every ``/invocations`` line also carries an ``_aws`` block, which
turns its numbers into CloudWatch metrics (``LatencyMs``, ``Texts``, ``CpuMs``, ``ClientErrors``,
``ServerErrors``) in the namespace ``TEXTCLF_EMF_NAMESPACE``, by model version, without a
separate agent or API call. ``CpuMs`` (``cpu_ms``) is the CPU time of the thread that served the
request, from its first hook to its last: the model's too with one ONNX Runtime thread per worker
(the default); with more, the runtime's pool threads are not counted.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

METRICS = (
    ("LatencyMs", "Milliseconds"),
    ("Texts", "Count"),
    ("CpuMs", "Milliseconds"),
    ("ClientErrors", "Count"),
    ("ServerErrors", "Count"),
)

# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


class RequestLog:
    """Writes request records as single JSON lines; safe to share between a worker's threads."""

    def __init__(
        self,
        model_version: str,
        *,
        stream: IO[str] | None = None,
        log_texts: bool = False,
        emf: bool = False,
        namespace: str = "textclf",
    ) -> None:
        self.model_version = model_version
        self.stream = stream
        self.log_texts = log_texts
        self.emf = emf
        self.namespace = namespace
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any], texts: list[str] | None = None) -> None:
        line: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "type": "request",
            **record,
            "model_version": self.model_version,
        }
        if self.log_texts and texts is not None:
            line["input_texts"] = texts
        if self.emf and record.get("path") == "/invocations":
            status = int(record.get("status", 0))
            line.update(
                {
                    "ModelVersion": self.model_version,
                    "LatencyMs": record.get("latency_ms", 0.0),
                    "Texts": record.get("texts", 0),
                    "CpuMs": record.get("cpu_ms", 0.0),
                    "ClientErrors": int(400 <= status < 500),
                    "ServerErrors": int(status >= 500),
                    "_aws": {
                        "Timestamp": int(time.time() * 1000),
                        "CloudWatchMetrics": [
                            {
                                "Namespace": self.namespace,
                                "Dimensions": [["ModelVersion"]],
                                "Metrics": [{"Name": name, "Unit": unit} for name, unit in METRICS],
                            }
                        ],
                    },
                }
            )
        text = _ENCODER.encode(line) + "\n"
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(text)
            stream.flush()
