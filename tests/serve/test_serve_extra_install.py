"""``pip install 'textclf[serve]'`` as a user does it: a clean venv, the package built from this
checkout, its serve extra's ranges resolved by pip (no lock), and no torch. That venv's own
``textclf serve`` (real nginx -> gunicorn -> Flask -> onnxruntime) and ``textclf predict`` answer
with a really exported model as the dev venv's predictor does.

Needs the package index (PyPI, or the mirror pip is configured with): a minute or two.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from lock import extra_requirements, load_pyproject
from packaging.utils import canonicalize_name

from support.serving import SINGLE_LABELS, ServeProcess, cmdline, make_sm_root
from textclf.model.predictor import Classifier

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["a great movie", "the plot was boring and bad", "not very good acting"]
NOT_FOR_SERVING = {"torch", "transformers", "safetensors", "onnx", "scikit-learn", "matplotlib", "pydantic"}


def source_tree(dest: Path) -> Path:
    """What the package is built from (pyproject.toml, README.md, nginx.conf, src/), without this
    checkout's build leftovers, so that pip builds in a folder of its own."""
    for name in ("pyproject.toml", "README.md", "nginx.conf"):
        shutil.copy2(REPO_ROOT / name, dest / name)
    shutil.copytree(
        REPO_ROOT / "src", dest / "src", symlinks=True, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    return dest


def clean_env(venv: Path) -> dict[str, str]:
    """This environment less anything that points into the dev venv or this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    dev_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [str(venv / "bin"), *(p for p in env.get("PATH", "").split(os.pathsep) if p != dev_bin)]
    )
    env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("serve-extra")
    (work / "textclf").mkdir()
    source = source_tree(work / "textclf")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    started = time.monotonic()
    proc = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{source}[serve]"],
        cwd=work, env=clean_env(venv), capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"pip install '.[serve]' failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    print(f"\npip install '.[serve]' into a clean venv: {time.monotonic() - started:.0f} s")
    return venv


def installed(venv: Path) -> dict[str, str]:
    listing = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        env=clean_env(venv), capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return {canonicalize_name(d["name"]): d["version"] for d in json.loads(listing)}


def test_the_serve_extra_installs_its_ranges_and_no_torch(serve_venv: Path) -> None:
    packages = installed(serve_venv)
    print("resolved by pip:", {n: packages[n] for n in ("onnxruntime", "tokenizers", "numpy", "flask", "gunicorn")})
    assert "textclf" in packages
    assert not NOT_FOR_SERVING & set(packages), f"the serve extra pulled {NOT_FOR_SERVING & set(packages)}"
    assert not any(name.startswith("nvidia-") for name in packages)
    for requirement in extra_requirements(load_pyproject(REPO_ROOT), ["serve"]):
        version = packages.get(canonicalize_name(requirement.name))
        assert version is not None and requirement.specifier.contains(version), (str(requirement), version)
    where = subprocess.run(
        [str(serve_venv / "bin/python"), "-c", "import textclf, onnxruntime; print(textclf.__file__)"],
        env=clean_env(serve_venv), cwd=serve_venv, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(serve_venv)), f"textclf imported from {where}, not from the venv"


def test_its_predict_answers_as_the_dev_venv_does(serve_venv: Path, model_dir: Path) -> None:
    proc = subprocess.run(
        [str(serve_venv / "bin/textclf"), "predict", str(model_dir), *TEXTS, "--top-k", "3"],
        env=clean_env(serve_venv), cwd=serve_venv, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = Classifier.load(model_dir, threads=1).predict(TEXTS, top_k=3)
    assert [line["text"] for line in lines] == TEXTS
    for line, want in zip(lines, expected, strict=True):
        assert {p["label"] for p in line["predictions"]} == set(SINGLE_LABELS)
        assert [p["label"] for p in line["predictions"]] == [p["label"] for p in want]
        assert [p["score"] for p in line["predictions"]] == pytest.approx([p["score"] for p in want], abs=1e-4)


class VenvServe(ServeProcess):
    """``textclf serve`` of another venv: its console script, its python for gunicorn."""

    def __init__(self, venv: Path, sm_root: Path, log_dir: Path) -> None:
        super().__init__(sm_root, log_dir, workers=1)
        self.venv = venv
        self.env = {**clean_env(venv), **{k: v for k, v in self.env.items() if k not in ("PATH", "VIRTUAL_ENV")}}
        self.env.pop("PYTHONPATH", None)

    def start(self) -> VenvServe:
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [str(self.venv / "bin/textclf"), "serve"],
                env=self.env, cwd=self.log_dir, stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip
        return self


@pytest.fixture(scope="module")
def venv_stack(serve_venv: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VenvServe]:
    work = tmp_path_factory.mktemp("serve-extra-stack")
    with VenvServe(serve_venv, make_sm_root(model_dir, work / "opt-ml"), work / "logs") as serve:
        serve.wait_ready(timeout=120)
        yield serve


def test_its_serve_answers_over_http(venv_stack: VenvServe, model_dir: Path) -> None:
    gunicorn = cmdline(venv_stack.child("gunicorn"))
    assert gunicorn.startswith(str(venv_stack.venv / "bin/python")), gunicorn
    assert requests.get(venv_stack.url("/ping"), timeout=5).status_code == 200
    response = requests.post(venv_stack.url("/invocations"), json={"inputs": TEXTS}, timeout=60)
    assert response.status_code == 200, response.text
    expected = Classifier.load(model_dir, threads=1).predict(TEXTS)
    answers = response.json()
    assert len(answers) == len(TEXTS)
    for got, want in zip(answers, expected, strict=True):
        assert [e["label"] for e in got] == [e["label"] for e in want]
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-4)
