"""Hardening of the serving stack: nginx hides its version, only the three SageMaker routes and their
methods reach the app, body size / header size / body-receive time are bounded, no Flask debug mode."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.reliability import exchange, http_request
from support.serving import ServeProcess, make_sm_root
from textclf.serve.app import create_app
from textclf.serve.settings import ServingSettings
from textclf.serve.supervisor import gunicorn_command, render_nginx_conf, template_text

ROUTES = {"/ping": {"GET", "HEAD"}, "/execution-parameters": {"GET", "HEAD"}, "/invocations": {"POST"}}
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]


@pytest.fixture(scope="module")
def stack(reliability_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    work = tmp_path_factory.mktemp("hardening")
    env = {"FLASK_DEBUG": "1", "FLASK_ENV": "development"}  # must change nothing
    with ServeProcess(make_sm_root(reliability_model_dir, work / "opt-ml"), work / "logs", env, workers=1) as serve:
        serve.wait_ready()
        yield serve


def test_nginx_hides_its_version(stack: ServeProcess) -> None:
    for request in (http_request("GET", "/ping"), http_request("GET", "/nope"), b"BROKEN\r\n\r\n"):
        answer = exchange(stack.port, request)
        assert answer.headers["server"] == "nginx", answer.headers
        assert not re.search(rb"nginx/\d", answer.body), answer.body


@pytest.mark.parametrize("path", [*ROUTES, "/", "/health", "/models", "/invoke", "/ping2", "/static/x"])
def test_only_three_routes_and_their_methods(stack: ServeProcess, path: str) -> None:
    for method in METHODS:
        body = b'["a"]' if method in ("POST", "PUT", "PATCH") else b""
        headers = {"Content-Type": "application/json"} if body else {}
        answer = exchange(stack.port, http_request(method, path, body, headers))
        if path not in ROUTES:  # nginx refuses TRACE everywhere, before it looks at the route
            assert answer.status == (405 if method == "TRACE" else 404), (method, path, answer.status)
        elif method in ROUTES[path]:
            assert answer.status == 200, (method, path, answer.status, answer.body[:200])
        else:
            assert answer.status == 405, (method, path, answer.status)
            assert set(answer.headers["allow"].split(", ")) == ROUTES[path]


def test_limits_are_in_the_rendered_nginx_conf(tmp_path: Path) -> None:
    settings = ServingSettings(model_dir=tmp_path, client_header_timeout_s=7, client_body_timeout_s=9)
    conf = render_nginx_conf(template_text(settings), settings, tmp_path, tmp_path / "sock")
    for directive in (
        "server_tokens off;",
        "client_max_body_size 6m;",
        "client_header_timeout 7s;",
        "client_body_timeout 9s;",
        "large_client_header_buffers 4 16k;",
        "proxy_pass_request_headers off;",
    ):
        assert directive in conf
    assert "{{" not in conf


def test_body_header_and_time_limits_hold(stack: ServeProcess) -> None:
    big = exchange(stack.port, http_request("POST", "/invocations", b"x" * (7 << 20), {"Content-Type": "text/plain"}))
    assert big.status == 413
    header = exchange(stack.port, http_request("GET", "/ping", headers={"X-Big": "y" * 20_000}))
    assert header.status == 431


def test_no_flask_debug_mode(reliability_model_dir: Path, monkeypatch: pytest.MonkeyPatch, stack: ServeProcess) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = create_app(ServingSettings(model_dir=reliability_model_dir))
    assert app.debug is False
    assert not app.config["DEBUG"]
    command = " ".join(gunicorn_command(ServingSettings(model_dir=reliability_model_dir), Path("s"), Path("r")))
    assert "--reload" not in command and "--debug" not in command
    # The stack runs with FLASK_DEBUG=1 too: an unknown route is still our JSON, no debugger page.
    answer = exchange(stack.port, http_request("POST", "/invocations", b"{", {"Content-Type": "application/json"}))
    assert answer.status == 400 and b"Werkzeug" not in answer.body and b"Traceback" not in answer.body
