"""The generated blocks of the READMEs: ``make readme-tables`` rewrites them all.

A block is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; nothing outside the
markers is touched. This module is the one place that knows that format and where each block lives:

- README.md ``hyperparameters``: the hyperparameter table, from ``textclf.train.hyperparameters``;
- README.md ``families``: the encoder-family table, from ``textclf.train.families`` (which rows the
  tests in tests/families run end to end, and which ``train`` refuses);
- bench/README.md ``bench``: the benchmark tables, printed by bench/make_readme_table.py from
  ``bench/results/*.json`` (run, not imported: bench/ holds scripts, not a package).

tests/core/test_readme.py reads blocks back with ``block`` and the bodies with ``BLOCKS`` to check
that they are up to date. ``--check`` only reports the stale blocks (exit status 1 when any is).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BENCH_README = REPO / "bench" / "README.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def block(text: str, name: str) -> str | None:
    """The body of block ``name`` (stripped), or None when its markers are not both there in order."""
    start, end = markers(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        return None
    return text[i + len(start) : j].strip()


def splice(text: str, name: str, body: str) -> str | None:
    """``text`` with ``body`` between the markers of ``name``, or None when they are not both there in order."""
    start, end = markers(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        return None
    return text[: i + len(start)] + "\n" + body.rstrip("\n") + "\n" + text[j:]


def hyperparameters() -> str:
    from textclf.train.hyperparameters import markdown_table

    return markdown_table()


def model_families() -> str:
    from textclf.train.families import markdown_table

    return markdown_table()


def bench_results() -> str:
    script = REPO / "bench" / "make_readme_table.py"
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


# (file, block name) -> what goes between its markers
BLOCKS: dict[tuple[Path, str], Callable[[], str]] = {
    (README, "hyperparameters"): hyperparameters,
    (README, "families"): model_families,
    (BENCH_README, "bench"): bench_results,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block is out of date")
    args = ap.parse_args(argv)
    stale = []
    for (path, name), body in BLOCKS.items():
        text = path.read_text(encoding="utf-8")
        updated = splice(text, name, body())
        start, end = markers(name)
        if updated is None:
            raise SystemExit(f"{path}: no {start} ... {end} block")
        if updated == text:
            continue
        stale.append(f"{path.relative_to(REPO)} ({name})")
        if not args.check:
            path.write_text(updated, encoding="utf-8")
            print(f"updated {path.relative_to(REPO)} ({name})")
    if args.check and stale:
        print("out of date (run: make readme-tables): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
