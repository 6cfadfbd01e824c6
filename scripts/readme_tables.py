"""Rewrite the README's generated blocks from the code: ``make readme-tables``.

A block is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; tests/core/test_readme.py
fails when a block and its source disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from textclf.hyperparameters import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{README}: no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def main() -> int:
    text = README.read_text(encoding="utf-8")
    updated = replace_block(text, "hyperparameters", markdown_table())
    if updated != text:
        README.write_text(updated, encoding="utf-8")
        print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
