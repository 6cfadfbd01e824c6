"""The floor of ``textclf serve``'s stack: nginx -> gunicorn -> a plain Flask route around the predictor.

Runs the product's own supervisor (``textclf.serve.supervisor.main``: the rendered nginx.conf, the
gunicorn command line, signals and shutdown) with one change: gunicorn loads ``create_app()`` below,
a Flask app with one plain ``POST /invocations`` route around the product's predictor (and a
``GET /ping``), without the product's hooks, rules, request ids, deadlines, parameters or request
log. What ``textclf serve`` costs over this is what its request features cost; what this costs
over the bare predictor is the floor of nginx -> gunicorn -> Flask on the machine. Started by
``bench/server_load.py`` (server ``stack-floor``) with ``textclf serve``'s environment::

    SM_ROOT=... SAGEMAKER_BIND_TO_PORT=... .venv/bin/python bench/peers/stack_floor.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from bare_wsgi import answer  # this folder: on sys.path as the script's, and by gunicorn's --chdir
from flask import Flask, Response, request

from textclf.model.predictor import Classifier
from textclf.serve import supervisor
from textclf.serve.settings import ServingSettings

_product_command = supervisor.gunicorn_command


def _plain_app_command(settings: ServingSettings, socket: Path, run_dir: Path) -> list[str]:
    cmd = _product_command(settings, socket, run_dir)
    assert cmd[-1] == "textclf.serve.app:create_app()", cmd
    return [*cmd[:-1], "--chdir", str(Path(__file__).resolve().parent), "stack_floor:create_app()"]


def create_app() -> Flask:
    settings = ServingSettings.from_env()
    classifier = Classifier.load(settings.model_dir, threads=settings.intra_op_threads)
    classifier.warmup()
    app = Flask("stack_floor")

    @app.get("/ping")
    def ping() -> Response:
        return Response("{}", content_type="application/json")

    @app.post("/invocations")
    def invocations() -> Response:
        return Response(answer(classifier, request.get_data()), content_type="application/json")

    return app


if __name__ == "__main__":
    supervisor.gunicorn_command = _plain_app_command  # type: ignore[assignment]
    sys.exit(supervisor.main())
