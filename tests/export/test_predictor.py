"""Classifier: predictions equal PyTorch's, request order, top-k, multi-label, windows, cache, inputs."""

from __future__ import annotations

import numpy as np
import pytest

from support.tiny_classifiers import FILLER, KEYWORDS, LABELS, multi_label_examples, single_examples
from support.torch_reference import torch_probs
from textclf.errors import RequestError
from textclf.model.predictor import Classifier
from textclf.serve.codecs import JSON, Inputs
from textclf.serve.rules import RuleSet
from textclf.serve.service import InferenceService


@pytest.fixture(scope="module")
def classifier(bert_model_dir) -> Classifier:
    return Classifier.load(bert_model_dir)


@pytest.fixture(scope="module")
def fp32_dir(bert_dir, tmp_path_factory):
    """FP32 ONNX: close enough to PyTorch to compare probabilities, not only labels."""
    from support.tiny_classifiers import export_tiny

    return export_tiny(bert_dir, tmp_path_factory.mktemp("fp32") / "m", None, precision="fp32")


def _mixed_lengths() -> list[str]:
    texts = [e.text for e in single_examples(40, seed=11)]
    texts[3] = " ".join(FILLER[:20]) + " election"  # long
    texts[7] = "robot"  # short
    texts[8] = ""  # empty
    return texts


def test_predictions_equal_pytorch_argmax_in_request_order(classifier, bert_dir):
    texts = _mixed_lengths()
    want = torch_probs(bert_dir, classifier.encoder.encode(texts), classifier.encoder, "single_label")
    got = classifier.predict(texts, batch_size=4)  # ten length-sorted micro-batches
    assert [r[0]["label"] for r in got] == [LABELS[i] for i in want.argmax(axis=1)]
    one_by_one = [classifier.predict([t])[0] for t in texts]
    assert [r[0]["label"] for r in got] == [r[0]["label"] for r in one_by_one]


def test_batched_scores_equal_single_scores_in_request_order(fp32_dir, bert_dir):
    classifier = Classifier.load(fp32_dir)
    texts = _mixed_lengths()
    batched = classifier.scores(texts, batch_size=3)
    single = np.stack([classifier.scores([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    want = torch_probs(bert_dir, classifier.encoder.encode(texts), classifier.encoder, "single_label")
    np.testing.assert_allclose(batched, want, atol=1e-4)
    reordered = classifier.scores(texts[::-1], batch_size=5)[::-1]
    np.testing.assert_allclose(reordered, batched, atol=1e-5)


def test_top_k_and_result_shape(classifier):
    texts = ["the football goal", "a vote in the senate"]
    top1 = classifier.predict(texts)
    assert [r[0]["label"] for r in top1] == ["sports", "politics"]
    assert all(len(r) == 1 and set(r[0]) == {"label", "score"} for r in top1)
    everything = classifier.predict(texts, top_k=None)
    for row in everything:
        assert sorted(p["label"] for p in row) == sorted(LABELS)
        scores = [p["score"] for p in row]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)
        assert all(isinstance(s, float) for s in scores)
    assert [len(r) for r in classifier.predict(texts, top_k=2)] == [2, 2]
    assert [len(r) for r in classifier.predict(texts, top_k=10)] == [3, 3]
    assert everything[0][0] == top1[0][0]
    probs = classifier.scores(texts)
    assert probs.shape == (2, 3) and probs.dtype == np.float32


def test_empty_request(classifier):
    assert classifier.predict([]) == []
    assert classifier.scores([]).shape == (0, 3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.predict("one string"), "list of strings"),
        (lambda c: c.predict([1, 2]), "list of strings"),
        (lambda c: c.predict(["a"], ["b"]), "exactly when the model classifies text pairs"),
        (lambda c: c.predict(["a"], batch_size=0), "batch_size"),
    ],
)
def test_broken_calls_are_value_errors(classifier, call, message):
    """The predictor checks its calling contract; requests are checked by the service (below)."""
    with pytest.raises(ValueError, match=message):
        call(classifier)


@pytest.mark.parametrize(
    ("inputs", "attributes", "message"),
    [
        (Inputs(["a"], None, False, JSON, {"top_k": 0}), {}, "top_k"),
        (Inputs(["a"], None, False, JSON, {"threshold": 0.3}), {}, "multi-label models only"),
        (Inputs(["a"], ["b"], False, JSON), {}, "takes no text pairs"),
        (Inputs(["a"], None, False, JSON), {"sliding_window": "true", "stride": "10000"}, "stride"),
    ],
)
def test_bad_requests_are_request_errors_from_the_service(classifier, inputs, attributes, message):
    service = InferenceService(classifier, RuleSet())
    with pytest.raises(RequestError, match=message):
        service.invoke(inputs, attributes, "request-id")


def test_labels_and_manifest(classifier):
    assert classifier.labels == LABELS
    assert classifier.manifest.precision == "int8"
    assert classifier.threads == 1
    assert classifier.session.get_session_options().intra_op_num_threads == 1
    assert Classifier.load(classifier.model_dir, threads=2).session.get_session_options().intra_op_num_threads == 2
    with pytest.raises(ValueError, match="threads"):
        Classifier.load(classifier.model_dir, threads=0)


# -- sliding window -----------------------------------------------------------------------------------------
def test_sliding_window_averages_window_probabilities(fp32_dir, bert_dir):
    classifier = Classifier.load(fp32_dir)
    # 70 filler words then a keyword: beyond max_seq_length (32), so head truncation never sees it.
    long_text = " ".join(FILLER[i % len(FILLER)] for i in range(70)) + " " + KEYWORDS["tech"][0]
    short_text = "the senate vote"
    encoder = classifier.encoder
    windows = encoder.windows(long_text)
    assert len(windows) > 2
    want = torch_probs(bert_dir, windows, encoder, "single_label").mean(axis=0)
    got = classifier.scores([short_text, long_text], sliding_window=True, batch_size=2)
    np.testing.assert_allclose(got[1], want, atol=1e-4)
    np.testing.assert_allclose(got[0], classifier.scores([short_text])[0], atol=1e-5)  # one window = plain
    truncated = classifier.scores([long_text])[0]
    assert not np.allclose(truncated, got[1], atol=1e-3)
    strided = encoder.windows(long_text, stride=5)
    want5 = torch_probs(bert_dir, strided, encoder, "single_label").mean(axis=0)
    np.testing.assert_allclose(classifier.scores([long_text], sliding_window=True, stride=5)[0], want5, atol=1e-4)
    assert classifier.predict([long_text], sliding_window=True)[0][0]["label"] == LABELS[int(want.argmax())]


# -- multi-label --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multi(multi_dir, tmp_path_factory) -> Classifier:
    from support.tiny_classifiers import export_tiny

    return Classifier.load(export_tiny(multi_dir, tmp_path_factory.mktemp("multi") / "m", None))


def test_multi_label_scores_are_sigmoids(multi, multi_dir):
    texts = [e.text for e in multi_label_examples(60, seed=13)]
    probs = multi.scores(texts)
    want = torch_probs(multi_dir, multi.encoder.encode(texts), multi.encoder, "multi_label")
    assert ((probs >= 0.5) == (want >= 0.5)).all(axis=1).mean() >= 0.95
    assert not np.allclose(probs.sum(axis=1), 1.0)  # independent sigmoids, not a softmax
    sizes = {int((row >= 0.5).sum()) for row in probs}
    assert len(sizes) >= 2  # some texts get more labels than others


def test_multi_label_thresholds(multi):
    texts = [e.text for e in multi_label_examples(40, seed=17)]
    probs = multi.scores(texts)
    default = multi.predict(texts)  # threshold from the manifest (0.5); top_k=1 does not cap the set
    for row, result in zip(probs, default, strict=True):
        assert {p["label"] for p in result} == {LABELS[j] for j in np.flatnonzero(row >= 0.5)}
        assert [p["score"] for p in result] == sorted((p["score"] for p in result), reverse=True)
    assert any(len(r) > 1 for r in default) and any(len(r) == 0 for r in default)
    low = multi.predict(texts, threshold=0.05)
    high = multi.predict(texts, threshold=0.95)
    assert all(len(lo) >= len(d) >= len(hi) for lo, d, hi in zip(low, default, high, strict=True))
    assert sum(map(len, low)) > sum(map(len, default)) or sum(map(len, high)) < sum(map(len, default))
    everything = multi.predict(texts, top_k=None)
    assert all(len(r) == 3 for r in everything)
    with pytest.raises(RequestError, match="between 0 and 1"):
        InferenceService(multi, RuleSet()).invoke(Inputs(texts, None, False, JSON, {"threshold": 1.5}), {}, "r")


# -- cache --------------------------------------------------------------------------------------------------
def test_cache_returns_identical_results_and_counts_hits(bert_model_dir):
    plain = Classifier.load(bert_model_dir)
    cached = Classifier.load(bert_model_dir, cache_size=3)
    assert plain.cache_info() is None
    texts = ["the football match", "a new laptop", "the senate vote"]
    first = cached.predict(texts, top_k=None)
    assert cached.cache_info().hits == 0 and cached.cache_info().misses == 3
    again = cached.predict(["a new laptop", "the  Football match", "the football match"], top_k=None)
    # "the  Football match" tokenizes like "the football match" for this uncased tokenizer: a hit too
    info = cached.cache_info()
    assert (info.hits, info.misses, info.size) == (3, 3, 3)
    assert again == [first[1], first[0], first[0]]
    assert first == plain.predict(texts, top_k=None)
    internet = cached.predict(["robot", "internet"], top_k=None)[1]  # evicts the two least recently used
    assert cached.cache_info().size == 3
    cached.predict(["a new laptop"])
    assert cached.cache_info().misses == 6  # evicted, computed again
    mixed = cached.predict(["internet", "goal", "internet"], top_k=None)
    assert mixed[0] == mixed[2] == internet
    assert mixed[1][0]["label"] == "sports"
    assert cached.cache_info().hits == 5


def test_cache_keeps_windowed_and_truncated_results_apart(bert_model_dir):
    cached = Classifier.load(bert_model_dir, cache_size=10)
    long_text = " ".join(FILLER * 2) + " robot"
    truncated = cached.scores([long_text])
    windowed = cached.scores([long_text], sliding_window=True)
    assert cached.cache_info().hits == 0
    assert not np.allclose(truncated, windowed)
    np.testing.assert_array_equal(cached.scores([long_text], sliding_window=True), windowed)
    assert cached.cache_info().hits == 1
