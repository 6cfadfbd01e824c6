"""Shared fixtures. This directory is on sys.path (pytest's rootdir-relative conftest import), so
tests can ``from helpers.tiny_model import make_tiny_model``."""

from __future__ import annotations
