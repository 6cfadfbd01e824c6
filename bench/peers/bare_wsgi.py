"""The floor of a gunicorn-served predictor: the product's predictor behind a bare WSGI function.

No Flask, no hooks, no request ids, rules, deadlines or request log: the body is read, its
``"inputs"`` (a text or a list of texts) classified by ``textclf.model.predictor.Classifier`` (1 ORT
thread) and the answer written as JSON. ``bench/server_load.py`` (server ``bare-wsgi``) and
``bench/request_breakdown.py`` run it with ``textclf serve``'s own gunicorn command line (worker
class, threads, keep-alive), so that the time gunicorn itself costs on this machine, for an app that
takes as long as the model, is measured rather than guessed::

    BARE_MODEL_DIR=MODEL_DIR .venv/bin/python -m gunicorn ... --chdir bench/peers 'bare_wsgi:create_app()'
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from textclf.model.predictor import Classifier


def answer(classifier: Classifier, body: bytes) -> bytes:
    """The JSON answer to ``{"inputs": text}`` (one prediction) or ``{"inputs": [texts]}`` (one each)."""
    inputs = json.loads(body)["inputs"]
    if isinstance(inputs, str):
        return json.dumps(classifier.predict([inputs])[0]).encode()
    return json.dumps(classifier.predict(inputs)).encode()


def create_app() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    classifier = Classifier.load(os.environ["BARE_MODEL_DIR"], threads=1)
    classifier.warmup()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "GET":  # /ping, for the benchmark's readiness check
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
            return [b"{}"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = answer(classifier, environ["wsgi.input"].read(length))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app
