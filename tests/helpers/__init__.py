"""Shared test helpers (tiny models, tokenizers, data): importable as ``helpers.*`` via tests/conftest.py."""
