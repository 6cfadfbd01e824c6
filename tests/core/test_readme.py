"""The READMEs' generated sections must match the code and results they describe."""

from __future__ import annotations

import re
from pathlib import Path

from readme_tables import BENCH_README, README, bench_results, block, splice  # scripts/ is on pytest's pythonpath

from textclf.train.hyperparameters import markdown_table

REPO = Path(__file__).resolve().parents[2]


def generated_block(path: Path, name: str) -> str:
    body = block(path.read_text(encoding="utf-8"), name)
    assert body is not None, f"{path.relative_to(REPO)} has no generated block {name!r}"
    return body


def test_hyperparameter_table_is_generated_from_the_code() -> None:
    assert generated_block(README, "hyperparameters") == markdown_table(), "run: make readme-tables"


def test_bench_tables_are_generated_from_the_results() -> None:
    assert generated_block(BENCH_README, "bench") == bench_results().strip(), "run: make readme-tables"


def test_splice_changes_only_the_text_between_the_markers() -> None:
    before, after = "# title\n\nintro\n<!-- bench:start -->\n", "<!-- bench:end -->\n\nmore text\n"
    assert splice(before + "old table\n" + after, "bench", "| new |\n\n") == before + "| new |\n" + after
    assert splice("# no markers here\n", "bench", "| new |") is None
    assert splice("<!-- bench:end --> <!-- bench:start -->", "bench", "| new |") is None


def test_readme_keeps_the_headlines_and_links_the_bench_readme() -> None:
    text = README.read_text(encoding="utf-8")
    performance = text[text.index("## Measured performance") :]
    assert "| what | figure | aim |" in performance and "### Image sizes" in performance
    assert "](bench/README.md)" in performance
    assert block(text, "bench") is None, "the per-result tables live in bench/README.md"


def test_bench_readme_names_every_benchmark_and_its_command() -> None:
    text = BENCH_README.read_text(encoding="utf-8")
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+\.py)` \| [^|]+ \| (.+) \|$", text, re.MULTILINE)}
    libraries = {"benchlib.py", "make_readme_table.py"}
    scripts = {p.name for p in (REPO / "bench").glob("*.py")} - libraries
    assert set(rows) == scripts
    for script, command in rows.items():
        assert f"`.venv/bin/python bench/{script}" in command, (script, command)


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text(encoding="utf-8")[:3000]
    assert "make system-deps setup demo" in head
    assert "make system-deps setup test" in head


def test_ci_runs_the_readme_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci and "make setup" in ci and "make system-deps" in ci
