"""A model directory is refused, with a clear message, when a file is altered or missing, its format
unknown, or a file serve would load (a hook in code/) is not listed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from textclf.contract.model_dir import MANIFEST_FILE, MODEL_FILE, read_manifest, seal
from textclf.errors import ArtifactError
from textclf.model.predictor import Classifier


@pytest.fixture
def model_copy(bert_model_dir, tmp_path):
    return shutil.copytree(bert_model_dir, tmp_path / "model")


def test_a_tampered_file_is_refused(model_copy):
    with (model_copy / "tokenizer.json").open("a") as fh:
        fh.write(" ")
    with pytest.raises(ArtifactError, match=r"tokenizer\.json does not match its sha256 .*altered or truncated"):
        Classifier.load(model_copy)


def test_a_truncated_model_is_refused(model_copy):
    data = (model_copy / MODEL_FILE).read_bytes()
    (model_copy / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"model\.onnx does not match its sha256"):
        Classifier.load(model_copy)


def test_a_missing_file_is_refused(model_copy):
    (model_copy / "hf" / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"hf/model\.safetensors is missing \(listed in manifest\.json\)"):
        Classifier.load(model_copy)


def test_an_unknown_format_version_is_refused(model_copy):
    manifest = json.loads((model_copy / MANIFEST_FILE).read_text())
    (model_copy / MANIFEST_FILE).write_text(json.dumps(manifest | {"format_version": 99}))
    with pytest.raises(ArtifactError, match="unknown model format_version 99; this textclf reads formats 1 and 2"):
        Classifier.load(model_copy)


def test_no_manifest_is_refused(model_copy):
    (model_copy / MANIFEST_FILE).unlink()
    with pytest.raises(ArtifactError, match="not a textclf model directory"):
        Classifier.load(model_copy)


def test_verify_false_skips_hashes_but_not_the_format(model_copy):
    with (model_copy / "tokenizer_config.json").open("a") as fh:
        fh.write("\n")
    assert Classifier.load(model_copy, verify=False).predict(["goal"])[0][0]["label"] == "sports"


def test_user_code_is_sealed(model_copy):
    """A hook added to an exported model is refused until `textclf seal`; an edit after it too."""
    (model_copy / "code").mkdir()
    (model_copy / "code" / "rules.py").write_text("# added after training\n")
    with pytest.raises(ArtifactError, match=r"does not list: .*code/rules\.py; .*textclf seal"):
        Classifier.load(model_copy)
    assert seal(model_copy).added == ["code/rules.py"]
    assert read_manifest(model_copy, verify=True).files["code/rules.py"]
    (model_copy / "code" / "rules.py").write_text("# edited\n")
    with pytest.raises(ArtifactError, match=r"code/rules\.py does not match its sha256"):
        read_manifest(model_copy, verify=True)


def test_inputs_inconsistent_with_the_manifest_are_refused(model_copy):
    from textclf.contract.model_dir import write_manifest

    manifest = read_manifest(model_copy)
    manifest.model_inputs = ["input_ids", "attention_mask"]
    write_manifest(model_copy, manifest)
    with pytest.raises(ArtifactError, match="inconsistent"):
        Classifier.load(model_copy)


def test_loading_for_serving_imports_neither_torch_nor_transformers(bert_model_dir):
    script = textwrap.dedent(
        f"""
        import sys
        from textclf.model.predictor import Classifier
        classifier = Classifier.load({str(bert_model_dir)!r}, cache_size=8)
        print(classifier.predict(["the football match"])[0][0]["label"])
        heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        print("heavy:", ",".join(heavy) or "none")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == ["sports", "heavy:", "none"], result.stderr
