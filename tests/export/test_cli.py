"""``textclf export`` and ``textclf predict`` end to end, and their one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from support.tiny_classifiers import LABELS, pair_examples, single_examples
from textclf.cli import main
from textclf.contract.model_dir import read_manifest


def _write_csv(path, rows, header):
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_export_then_predict(bert_dir, tmp_path, capsys):
    validation = _write_csv(
        tmp_path / "dev.csv", [(e.text, LABELS[e.label]) for e in single_examples(80, seed=21)], ["sentence", "y"]
    )
    out = tmp_path / "model"
    code = main(
        ["export", str(bert_dir), str(out), "--validation", str(validation), "--text-column", "sentence",
         "--label-column", "y", "--max-seq-length", "32", "--per-channel", "--no-full-precision"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"-> {out}: int8 model.onnx" in printed
    assert "accuracy gate on 80 examples" in printed
    manifest = read_manifest(out)
    assert manifest.quantization["per_channel"] is True
    assert manifest.max_seq_length == 32
    assert manifest.metrics["int8_label_agreement"] >= 0.95
    assert not (out / "hf").exists()

    assert main(["predict", str(out), "the football match", "a laptop", "--top-k", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["the football match", "a laptop"]
    assert [line["predictions"][0]["label"] for line in lines] == ["sports", "tech"]
    assert all(len(line["predictions"]) == 2 for line in lines)


def test_export_defaults_and_integer_labels(bert_dir, tmp_path, capsys):
    """Without --max-seq-length the model's own limit is used; labels 0/1/2 are taken as ids (GLUE style)."""
    rows = [{"text": e.text, "label": e.label} for e in single_examples(30, seed=22)]
    validation = tmp_path / "dev.jsonl"
    validation.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["export", str(bert_dir), str(tmp_path / "m"), "--validation", str(validation)]) == 0
    manifest = read_manifest(tmp_path / "m")
    assert manifest.max_seq_length == 128
    assert manifest.metrics["fp32_validation_accuracy"] >= 0.9
    capsys.readouterr()


def test_export_text_pairs_from_tsv(pair_dir, tmp_path, capsys):
    examples = pair_examples(60, seed=23)
    validation = tmp_path / "dev.tsv"
    validation.write_text("a\tb\tlabel\n" + "".join(f"{e.text}\t{e.pair}\t{LABELS[e.label]}\n" for e in examples))
    code = main(
        ["export", str(pair_dir), str(tmp_path / "m"), "--validation", str(validation), "--text-column", "a",
         "--text-pair-column", "b", "--max-seq-length", "32"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert read_manifest(tmp_path / "m").text_pair


def test_bad_src_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [sys.executable, "-m", "textclf.cli", "export", str(missing), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {missing} does not exist: expected a fine-tuned Hugging Face model directory"
    ]
    assert not (tmp_path / "out").exists()


def test_unsupported_src_and_bad_labels_exit_2(bert_dir, tmp_path, capsys):
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder" / "config.json").write_text(
        json.dumps({"architectures": ["BertModel"], "model_type": "bert"})
    )
    assert main(["export", str(tmp_path / "encoder"), str(tmp_path / "out")]) == 2
    assert "not a sequence-classification model" in capsys.readouterr().err
    validation = _write_csv(tmp_path / "dev.csv", [("the goal", "weather")], ["text", "label"])
    assert main(["export", str(bert_dir), str(tmp_path / "out"), "--validation", str(validation)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'weather' is not one of the model's labels" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("top_k", ["0", "-1", "two"])
def test_predict_refuses_a_top_k_that_is_not_a_positive_integer(top_k, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", str(tmp_path), "a text", "--top-k", top_k])
    assert info.value.code == 2
    assert f"argument --top-k: {top_k!r} is not a positive integer" in capsys.readouterr().err
