"""The README's generated blocks: ``make readme-tables`` rewrites the hyperparameter table.

A block is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``. This module is the one
place that knows that format: bench/make_readme_table.py splices the ``bench`` block with ``splice``,
and tests/core/test_readme.py reads blocks back with ``block`` to check them against their source.
"""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


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


def main() -> int:
    from textclf.hyperparameters import markdown_table

    text = README.read_text(encoding="utf-8")
    updated = splice(text, "hyperparameters", markdown_table())
    if updated is None:
        raise SystemExit(f"{README}: no <!-- hyperparameters:start --> ... <!-- hyperparameters:end --> block")
    if updated != text:
        README.write_text(updated, encoding="utf-8")
        print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
