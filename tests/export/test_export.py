"""export_model_dir: ONNX + INT8 + manifest, the accuracy gate, and the model directory's placement."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from support.tiny_classifiers import LABELS, export_tiny, pair_examples, single_examples
from support.torch_reference import torch_probs
from textclf.contract.model_dir import FULL_PRECISION_DIR, MANIFEST_FILE, MODEL_FILE, read_manifest, seal
from textclf.errors import ArtifactError, ConfigError, DataError, ModelLoadError, QualityGateError
from textclf.export import hf_model
from textclf.export.gate import EvalSet
from textclf.export.options import ExportOptions
from textclf.export.pipeline import export_model_dir
from textclf.model.predictor import Classifier


def test_int8_agrees_with_pytorch_fp32_on_held_out_texts(bert_dir, bert_model_dir):
    held_out = single_examples(300, seed=99)
    texts = [e.text for e in held_out]
    classifier = Classifier.load(bert_model_dir)
    int8 = classifier.scores(texts).argmax(axis=1)
    fp32 = torch_probs(bert_dir, classifier.encoder.encode(texts), classifier.encoder, "single_label").argmax(axis=1)
    assert len(set(fp32.tolist())) == len(LABELS)  # a trained model, not a constant one
    assert (int8 == fp32).mean() >= 0.99
    assert (fp32 == np.array([e.label for e in held_out])).mean() >= 0.95


def test_manifest_is_complete_and_verifies(bert_model_dir):
    manifest = read_manifest(bert_model_dir, verify=True)
    assert manifest.labels == LABELS
    assert manifest.problem_type == "single_label"
    assert (manifest.max_seq_length, manifest.truncation, manifest.text_pair) == (32, "head", False)
    assert manifest.precision == "int8"
    assert manifest.quantization == {
        "method": "dynamic",
        "weight_type": "QInt8",
        "per_channel": True,
        "optimized": False,
    }
    assert manifest.source_model == "tiny-test"
    assert manifest.model_inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert {"torch", "transformers", "onnx", "onnxruntime", "tokenizers", "textclf"} <= set(manifest.versions)
    assert {"model.onnx", "tokenizer.json", "tokenizer_config.json", "hf/config.json", "hf/model.safetensors"} <= set(
        manifest.files
    )
    assert all(len(digest) == 64 for digest in manifest.files.values())
    metrics = manifest.metrics
    assert metrics["fp32_validation_accuracy"] >= 0.95
    assert metrics["fp32_validation_accuracy"] - metrics["int8_validation_accuracy"] <= 0.01
    assert metrics["int8_label_agreement"] >= 0.99
    assert metrics["quality_gate"]["ran"] and metrics["quality_gate"]["passed"]
    assert metrics["quality_gate"]["shipped"] == "int8"
    assert metrics["quality_gate"]["examples"] == 200


def test_model_is_int8_with_dynamic_axes(bert_model_dir):
    model = onnx.load(str(bert_model_dir / MODEL_FILE))
    ops = {node.op_type for node in model.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops
    initializers = {t.name: t for t in model.graph.initializer}
    matmul_weights = [initializers[n.input[1]] for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert len(matmul_weights) >= 2 * 6  # 2 layers x (q, k, v, out, up, down)
    assert {t.data_type for t in matmul_weights} == {onnx.TensorProto.INT8}  # signed QInt8: fast here
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"]


def test_full_precision_copy_is_the_source_weights(bert_dir, bert_model_dir):
    hf = bert_model_dir / FULL_PRECISION_DIR
    assert (hf / "model.safetensors").read_bytes() == (bert_dir / "model.safetensors").read_bytes()
    assert (hf / "tokenizer.json").is_file()


def test_without_eval_set_the_gate_is_recorded_as_not_run(bert_dir, export_model):
    model_dir = export_model(bert_dir, keep_full_precision=False)
    manifest = read_manifest(model_dir)
    assert manifest.metrics == {"quality_gate": {"ran": False, "reason": "no evaluation set was given"}}
    assert not (model_dir / FULL_PRECISION_DIR).exists()
    assert not any(name.startswith("hf/") for name in manifest.files)


def test_training_metrics_are_kept(bert_dir, tmp_path):
    manifest = export_model_dir(
        bert_dir, tmp_path / "m", ExportOptions(max_seq_length=32), metrics={"validation_accuracy": 0.97}
    )
    assert manifest.metrics["validation_accuracy"] == 0.97
    assert read_manifest(tmp_path / "m").metrics["validation_accuracy"] == 0.97


def test_fp32_precision_matches_pytorch_closely(bert_dir, export_model):
    model_dir = export_model(bert_dir, single_examples(50, seed=5), precision="fp32", per_channel=True)
    manifest = read_manifest(model_dir)
    assert manifest.precision == "fp32" and manifest.quantization == {"method": "none"}
    assert manifest.metrics["onnx_fp32_label_agreement"] == 1.0
    assert "int8_validation_accuracy" not in manifest.metrics
    classifier = Classifier.load(model_dir)
    texts = [e.text for e in single_examples(20, seed=6)]
    want = torch_probs(bert_dir, classifier.encoder.encode(texts), classifier.encoder, "single_label")
    np.testing.assert_allclose(classifier.scores(texts, batch_size=7), want, atol=1e-4)


def test_per_tensor_is_recorded(bert_dir, export_model):
    manifest = read_manifest(export_model(bert_dir, per_channel=False))
    assert manifest.quantization["per_channel"] is False


# -- the accuracy gate ---------------------------------------------------------------------------------
@pytest.fixture
def int8_breaks(monkeypatch):
    """Make the INT8 model disagree with FP32: the gate's ORT outputs are rolled by one label."""
    real = Classifier.scores

    def rolled(self, *args, **kwargs):
        probs = real(self, *args, **kwargs)
        return np.roll(probs, 1, axis=1) if self.manifest.precision == "int8" else probs

    monkeypatch.setattr(Classifier, "scores", rolled)


def test_gate_fails_when_int8_loses_too_much(bert_dir, tmp_path, int8_breaks):
    out = tmp_path / "model"
    with pytest.raises(QualityGateError) as err:
        export_tiny(bert_dir, out, single_examples(100, seed=3), max_accuracy_drop=0.0)
    message = str(err.value)
    assert message.startswith("INT8 accuracy ")
    assert "points below FP32" in message and "max_accuracy_drop=0" in message
    assert "set on_accuracy_drop=fp32 to ship FP32 ONNX instead" in message
    assert not out.exists()  # nothing half-written, no staging left behind
    assert [p.name for p in tmp_path.iterdir()] == []


def test_gate_ships_fp32_when_asked(bert_dir, tmp_path, int8_breaks):
    out = export_tiny(bert_dir, tmp_path / "model", single_examples(100, seed=3), on_accuracy_drop="fp32")
    manifest = read_manifest(out)
    assert manifest.precision == "fp32"
    assert manifest.quantization["method"] == "none"
    assert manifest.quantization["rejected"]["weight_type"] == "QInt8"
    assert "INT8 accuracy" in manifest.quantization["rejected"]["reason"]
    gate = manifest.metrics["quality_gate"]
    assert gate["passed"] is False and gate["shipped"] == "fp32"
    assert manifest.metrics["int8_validation_accuracy"] < manifest.metrics["fp32_validation_accuracy"]
    assert manifest.metrics["onnx_fp32_label_agreement"] == 1.0
    model = onnx.load(str(out / MODEL_FILE))
    assert not [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert Classifier.load(out).predict(["the football match"])[0][0]["label"] == "sports"


def test_gate_allows_a_drop_within_the_limit(bert_dir, tmp_path, monkeypatch):
    real = Classifier.scores
    flipped = {"n": 0}

    def one_wrong(self, *args, **kwargs):
        probs = real(self, *args, **kwargs).copy()
        probs[0] = np.roll(probs[0], 1)  # exactly one of 100 predictions changes: 1 point
        flipped["n"] += 1
        return probs

    monkeypatch.setattr(Classifier, "scores", one_wrong)
    examples = single_examples(100, seed=3)
    out = export_tiny(bert_dir, tmp_path / "ok", examples, max_accuracy_drop=1.0)
    metrics = read_manifest(out).metrics
    assert metrics["quality_gate"]["accuracy_drop_points"] == pytest.approx(1.0)
    assert metrics["int8_label_agreement"] == pytest.approx(0.99)
    with pytest.raises(QualityGateError, match=r"1\.00 points below"):
        export_tiny(bert_dir, tmp_path / "strict", examples, max_accuracy_drop=0.5)
    assert flipped["n"] == 2


def test_eval_set_problems_are_data_errors(bert_dir, tmp_path):
    options = ExportOptions(max_seq_length=32)
    with pytest.raises(DataError, match="out of range"):
        export_model_dir(bert_dir, tmp_path / "a", options, EvalSet(["x"], None, [7]))
    with pytest.raises(DataError, match="text pairs"):
        export_model_dir(bert_dir, tmp_path / "b", options, EvalSet(["x"], ["y"], [0]))
    with pytest.raises(DataError, match="differ in length"):
        export_model_dir(bert_dir, tmp_path / "c", options, EvalSet(["x", "y"], None, [0]))
    assert list(tmp_path.iterdir()) == []


# -- other model shapes -------------------------------------------------------------------------------------
def test_text_pairs_use_token_type_ids(pair_dir, export_model):
    examples = pair_examples(200, seed=7)
    model_dir = export_model(pair_dir, examples, text_pair=True)
    manifest = read_manifest(model_dir)
    assert manifest.text_pair and "token_type_ids" in manifest.model_inputs
    assert manifest.metrics["int8_label_agreement"] >= 0.99
    classifier = Classifier.load(model_dir)
    texts, pairs = [e.text for e in examples], [e.pair for e in examples]
    got = classifier.scores(texts, pairs).argmax(axis=1)
    want = torch_probs(pair_dir, classifier.encoder.encode(texts, pairs), classifier.encoder, "single_label")
    assert (got == want.argmax(axis=1)).mean() >= 0.99
    assert (got == np.array([e.label for e in examples])).mean() >= 0.95  # the second text decides
    swapped = classifier.scores(pairs, texts).argmax(axis=1)  # segments matter: swapping changes the answer
    assert (swapped != got).mean() > 0.9


def test_distilbert_exports_without_token_type_ids(distil_dir, export_model):
    examples = single_examples(100, seed=7)
    model_dir = export_model(distil_dir, examples)
    manifest = read_manifest(model_dir)
    assert manifest.model_inputs == ["input_ids", "attention_mask"]
    assert [i.name for i in onnx.load(str(model_dir / MODEL_FILE)).graph.input] == manifest.model_inputs
    classifier = Classifier.load(model_dir)
    texts = [e.text for e in examples]
    want = torch_probs(distil_dir, classifier.encoder.encode(texts), classifier.encoder, "single_label")
    assert (classifier.scores(texts).argmax(axis=1) == want.argmax(axis=1)).mean() >= 0.99


def test_multi_label_problem_type_comes_from_the_config(multi_dir, export_model):
    manifest = read_manifest(export_model(multi_dir, multi_label_threshold=0.4))
    assert manifest.problem_type == "multi_label"
    assert manifest.multi_label_threshold == 0.4


# -- refusals -----------------------------------------------------------------------------------------------
def test_unsupported_sources_are_refused(tmp_path, bert_dir):
    options = ExportOptions(max_seq_length=32)
    with pytest.raises(ModelLoadError, match="does not exist"):
        export_model_dir(tmp_path / "nope", tmp_path / "out", options)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        export_model_dir(tmp_path / "empty", tmp_path / "out", options)
    encoder_only = tmp_path / "encoder"
    shutil.copytree(bert_dir, encoder_only)
    config = json.loads((encoder_only / "config.json").read_text())
    (encoder_only / "config.json").write_text(json.dumps(config | {"architectures": ["BertModel"]}))
    with pytest.raises(ModelLoadError, match="BertModel, not a sequence-classification model"):
        export_model_dir(encoder_only, tmp_path / "out", options)
    with pytest.raises(ConfigError, match="exceeds"):
        export_model_dir(bert_dir, tmp_path / "out", ExportOptions(max_seq_length=4096))
    with pytest.raises(ConfigError, match="precision"):
        export_model_dir(bert_dir, tmp_path / "out", ExportOptions(precision="int4"))
    assert not (tmp_path / "out").exists()


def test_a_bare_encoder_with_a_random_head_is_refused(tmp_path, bert_dir):
    """Weights without a classifier head load with a fresh random head: that must not be exported."""
    from safetensors.torch import load_file, save_file

    src = tmp_path / "headless"
    shutil.copytree(bert_dir, src)
    weights = load_file(src / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("classifier.")}, src / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"not a fine-tuned classifier: its weights lack classifier\."):
        export_model_dir(src, tmp_path / "out", ExportOptions(max_seq_length=32))


# -- placing the model directory ----------------------------------------------------------------------------
def test_replaces_a_previous_model_directory_in_place(bert_dir, distil_dir, tmp_path):
    out = tmp_path / "model"
    export_tiny(bert_dir, out, None)
    (out / "code").mkdir()
    (out / "code" / "rules.py").write_text("# user rules\n")
    seal(out)
    (out / ".gitkeep").write_text("")
    inode = out.stat().st_ino
    export_tiny(distil_dir, out, None, keep_full_precision=False)
    manifest = read_manifest(out)  # verified: the sealed rules stay sealed in the new manifest
    assert "code/rules.py" in manifest.files
    assert manifest.model_inputs == ["input_ids", "attention_mask"]  # the DistilBERT one now
    assert out.stat().st_ino == inode  # the same directory (it may be a mount point)
    assert not (out / FULL_PRECISION_DIR).exists()  # old entries are gone...
    assert (out / "code" / "rules.py").read_text() == "# user rules\n"  # ...but the user's code stays
    assert (out / ".gitkeep").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging left


def test_refuses_to_overwrite_foreign_files(bert_dir, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match=r"refusing to replace .*notes\.txt"):
        export_tiny(bert_dir, out, None)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_writes_into_an_existing_empty_directory(bert_dir, tmp_path):
    out = tmp_path / "opt-ml-model"
    out.mkdir()
    export_tiny(bert_dir, out, None, keep_full_precision=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST_FILE, MODEL_FILE, "tokenizer.json", "tokenizer_config.json"]
    )
    assert read_manifest(out).files.keys() == {MODEL_FILE, "tokenizer.json", "tokenizer_config.json"}


def test_optimize_option_fuses_before_quantizing(bert_dir, export_model):
    model_dir = export_model(bert_dir, single_examples(100, seed=3), optimize=True)
    manifest = read_manifest(model_dir)
    assert manifest.quantization["optimized"] is True
    assert manifest.metrics["int8_label_agreement"] >= 0.99
    ops = {node.op_type for node in onnx.load(str(model_dir / MODEL_FILE)).graph.node}
    assert ops & {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu", "FastGelu"}


def test_model_max_length(bert_dir, tmp_path):
    assert hf_model.model_max_length(bert_dir) == 128  # max_position_embeddings of the tiny model
    src = tmp_path / "src"
    shutil.copytree(bert_dir, src)
    tok = json.loads((src / "tokenizer_config.json").read_text())
    (src / "tokenizer_config.json").write_text(json.dumps(tok | {"model_max_length": 64}))
    assert hf_model.model_max_length(src) == 64
