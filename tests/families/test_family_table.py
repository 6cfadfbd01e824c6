"""The README's family table is generated from ``textclf.train.families``, the table the tests run."""

from __future__ import annotations

from readme_tables import README, block  # scripts/ is on pytest's pythonpath

from textclf.train import families


def test_the_readme_family_table_is_generated_from_the_code() -> None:
    body = block(README.read_text(encoding="utf-8"), "families")
    assert body is not None, "README.md has no <!-- families:start --> ... <!-- families:end --> block"
    assert body == families.markdown_table(), "run: make readme-tables"


def test_the_table_names_each_family_once_and_says_why_a_refused_one_is_refused() -> None:
    types = [f.model_type for f in families.FAMILIES]
    assert len(types) == len(set(types))
    for f in families.FAMILIES:
        if f.supported:
            assert f.tokenizer in (families.WORDPIECE, families.BYTE_BPE, families.UNIGRAM) and f.pair_template, f
        else:
            assert f.reason and not f.tokenizer, f
    table = families.markdown_table()
    assert all(f"`{t}`" in table for t in types)
    assert "| **no** |" in table  # NeoBERT: the pinned transformers lacks it, and the table says so
