"""Tests of `textclf train`."""
