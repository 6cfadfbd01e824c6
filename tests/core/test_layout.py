"""The package layout is the architecture: checked statically, from the source.

``contract`` (what the jobs agree on), ``model`` (ONNX inference) and ``serve`` must run in the slim
serving image, which has no torch and no transformers; so none of them may import ``train``,
``export``, torch or transformers, at the top of a file or inside a function. ``contract`` imports
nothing of the package but ``errors``; ``model`` does not import ``serve``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "textclf"
README = PACKAGE.parents[1] / "README.md"
HEAVY = ("torch", "transformers")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "contract": ("textclf.model", "textclf.train", "textclf.export", "textclf.serve", *HEAVY),
    "model": ("textclf.train", "textclf.export", "textclf.serve", *HEAVY),
    "serve": ("textclf.train", "textclf.export", *HEAVY),
}


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` anywhere in ``path`` names (relative imports resolved)."""
    found: set[str] = set()
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # from textclf import train
    return found


def _violations(role: str) -> list[str]:
    bad = []
    for path in sorted((PACKAGE / role).rglob("*.py")):
        for module in sorted(imported_modules(path)):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[role]):
                bad.append(f"{path.relative_to(PACKAGE)} imports {module}")
    return bad


@pytest.mark.parametrize("role", sorted(FORBIDDEN))
def test_import_rule(role: str) -> None:
    assert _violations(role) == []


def test_the_rule_catches_what_it_forbids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "textclf"
    (fake / "serve").mkdir(parents=True)
    (fake / "serve" / "bad.py").write_text(
        "def f():\n    import torch\n    from textclf import train\n    from ..export import pipeline\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _violations("serve") == [
        "serve/bad.py imports textclf.export",
        "serve/bad.py imports textclf.export.pipeline",
        "serve/bad.py imports textclf.train",
        "serve/bad.py imports torch",
    ]


def test_readme_layout_names_every_module() -> None:
    """The README's Layout section lists exactly the package's modules (``ls src/textclf``)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    tree = section[section.index("src/textclf/") : section.index("```", section.index("src/textclf/"))]
    listed, folder = set(), ""
    for line in tree.splitlines()[1:]:
        name = re.match(r"^\s*([\w.]+/?)", line)
        if not name:
            continue
        entry = name.group(1)
        if entry.endswith("/"):
            folder = entry
        elif entry.endswith(".py"):
            listed.add((folder if line.startswith("    ") else "") + entry)
    actual = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert listed == actual
