"""The README's generated sections must match the code they describe."""

from __future__ import annotations

import sys
from pathlib import Path

from textclf.hyperparameters import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"
sys.path.insert(0, str(README.parent / "scripts"))
from readme_tables import block  # noqa: E402 (scripts/ is not a package)


def generated_block(name: str) -> str:
    body = block(README.read_text(encoding="utf-8"), name)
    assert body is not None, f"README.md has no generated block {name!r}"
    return body


def test_hyperparameter_table_is_generated_from_the_code() -> None:
    assert generated_block("hyperparameters") == markdown_table(), "run: make readme-tables and paste the output"


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text(encoding="utf-8")[:3000]
    assert "make system-deps setup demo" in head
    assert "make system-deps setup test" in head


def test_ci_runs_the_readme_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci and "make setup" in ci and "make system-deps" in ci
