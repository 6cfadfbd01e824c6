"""The seed-style server, the baseline a SageMaker bring-your-own-container tutorial leaves you with.

A Flask app in gunicorn (sync workers), each worker holding a transformers
``AutoModelForSequenceClassification`` in PyTorch FP32, every request padded to 128 tokens. Same
request and response shapes as ``textclf serve`` (``{"inputs": "text"}`` or ``{"inputs": [...]}``
-> one ``[{"label", "score"}]`` per text), so the same load hits both.

Started by ``bench/server_load.py``::

    SEED_MODEL_DIR=HF_DIR SEED_THREADS=1 .venv/bin/gunicorn -w 2 -b 127.0.0.1:PORT \
        --chdir bench/peers seed_flask_app:app

The model loads in each worker at import (after gunicorn's fork, no ``--preload``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from flask import Flask, Response, jsonify, request
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MODEL_DIR = os.environ["SEED_MODEL_DIR"]
MAX_LENGTH = int(os.environ.get("SEED_MAX_LENGTH", "128"))
# workers x threads <= cores, as a careful seed would set; torch's default counts every core in each worker.
torch.set_num_threads(int(os.environ.get("SEED_THREADS", "1")))

tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
model = AutoModelForSequenceClassification.from_pretrained(MODEL_DIR).eval()
id2label: dict[int, str] = model.config.id2label

app = Flask(__name__)


@app.get("/ping")
def ping() -> Response:
    return Response(status=200)


@app.post("/invocations")
def invocations() -> Any:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or "inputs" not in body:
        return jsonify(error='expected a JSON body {"inputs": "text"} or {"inputs": ["text", ...]}'), 400
    inputs = body["inputs"]
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    with torch.inference_mode():
        batch = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        probs = model(**batch).logits.softmax(-1)
    best = probs.max(-1)
    out = [[{"label": id2label[int(i)], "score": float(s)}] for s, i in zip(best.values, best.indices, strict=True)]
    return jsonify(out[0] if isinstance(inputs, str) else out)
