"""Root of the test tree. Fixtures live in each folder's conftest.py; helpers that tests share (tiny
models, the serve process, the train runner, ...) live in the ``support`` package (tests/support),
imported as ``from support.tiny_model import make_tiny_model``: pyproject.toml's pytest
``pythonpath`` puts tests/ (and the repository root, for ``ops``) on sys.path."""

from __future__ import annotations
