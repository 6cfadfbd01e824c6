"""Texts in, labels and scores out: a verified model directory run by ONNX Runtime on CPU.

This is what ``serve`` loads in each gunicorn worker (after the fork: ORT sessions do not survive
one), what ``textclf predict`` and the benchmarks call, and the Python API. It imports neither
torch nor transformers: the slim serving image has neither. Inputs are built by the same
``TextEncoder`` that training used, so serving sees exactly the inputs the model learned on.

Batches are padded dynamically and formed from length-sorted inputs (short texts are not padded to
the length of a long neighbour), then results are put back in request order. With an INT8 model a
text's scores move slightly (~1e-4) with its batch-mates: dynamic quantization picks one activation
scale per batch tensor. Labels do not move unless two scores are that close.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from textclf.contract.model_dir import MODEL_FILE, Manifest, ProblemType, read_manifest
from textclf.errors import ArtifactError
from textclf.model.cache import CacheInfo, ResultCache
from textclf.model.encoding import Encoded, TextEncoder
from textclf.model.prediction import LabelScore, Prediction, probabilities


def create_session(model_path: str | Path, threads: int) -> ort.InferenceSession:
    """A CPU session with an explicit thread count: ORT's default counts the host's cores, not the
    container's, and oversubscribed threads are catastrophic next to other workers."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
        raise ArtifactError(f"ONNX Runtime cannot load {model_path}: {exc}") from exc


class Classifier:
    """A loaded model directory. ``predict`` and ``scores`` may be called from several threads."""

    def __init__(
        self,
        session: ort.InferenceSession,
        encoder: TextEncoder,
        manifest: Manifest,
        *,
        model_dir: Path | None = None,
        threads: int = 1,
        cache_size: int = 0,
    ) -> None:
        inputs = [i.name for i in session.get_inputs()]
        if sorted(inputs) != sorted(manifest.model_inputs):
            raise ArtifactError(
                f"model.onnx takes inputs {inputs} but the manifest says {manifest.model_inputs}: "
                "the model directory is inconsistent; export it again"
            )
        self.session = session
        self.encoder = encoder
        self.manifest = manifest
        self.model_dir = model_dir
        self.threads = threads
        self._inputs = inputs
        self._output = session.get_outputs()[0].name
        # Content tokens per sliding window: the longest stride that still leaves no gap.
        self.max_stride = encoder.max_length - len(encoder.encode([""])[0].ids)
        self._cache = ResultCache(cache_size) if cache_size else None

    @classmethod
    def load(
        cls, model_dir: str | Path, *, threads: int | None = None, verify: bool = True, cache_size: int = 0
    ) -> Classifier:
        """Verify (format version, sha256 of every file) and load a model directory.

        ``threads``: ORT intra-op threads, 1 when not given (one per gunicorn worker; keep
        workers x threads <= cores). ``cache_size``: entries of the LRU result cache (0: off).
        """
        model_dir = Path(model_dir)
        threads = 1 if threads is None else threads
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be a non-negative integer, got {cache_size!r}")
        manifest = read_manifest(model_dir, verify=verify)
        try:
            encoder = TextEncoder.from_dir(model_dir, manifest.max_seq_length, manifest.truncation)
        except Exception as exc:  # tokenizers raises plain Exception on a bad tokenizer.json
            raise ArtifactError(f"cannot load the tokenizer of {model_dir}: {exc}") from exc
        session = create_session(model_dir / MODEL_FILE, threads)
        return cls(session, encoder, manifest, model_dir=model_dir, threads=threads, cache_size=cache_size)

    # -- properties -------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)

    @property
    def num_labels(self) -> int:
        return self.manifest.num_labels

    @property
    def problem_type(self) -> ProblemType:
        return self.manifest.problem_type

    @property
    def text_pair(self) -> bool:
        """Whether the model classifies text pairs (every text needs its second text)."""
        return self.manifest.text_pair

    def cache_info(self) -> CacheInfo | None:
        return self._cache.info() if self._cache else None

    def __repr__(self) -> str:
        return (
            f"Classifier({self.model_dir}, {self.manifest.precision}, {self.problem_type}, "
            f"{self.num_labels} labels, threads={self.threads})"
        )

    # -- public API -------------------------------------------------------------------------------
    def predict(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        top_k: int | None = 1,
        threshold: float | None = None,
        sliding_window: bool = False,
        stride: int | None = None,
        batch_size: int = 32,
    ) -> list[Prediction]:
        """Per input, ``[{"label", "score"}, ...]`` sorted by score, descending, in request order.

        single_label: the ``top_k`` best labels (``None``: all). multi_label: the labels whose
        sigmoid score is at least ``threshold`` (default: the manifest's), or every label with its
        score when ``top_k`` is ``None``; an integer ``top_k`` does not cap a multi-label set.
        Parameters are taken as given: requests are validated by the serving layer
        (``textclf.serve.service``), not here.
        """
        cut = self.manifest.multi_label_threshold if threshold is None else float(threshold)
        probs = self.scores(texts, pairs, sliding_window=sliding_window, stride=stride, batch_size=batch_size)
        labels = self.manifest.labels
        results: list[Prediction] = []
        for row in probs:
            order = np.argsort(-row, kind="stable")
            if self.problem_type == "multi_label" and top_k is not None:
                order = order[row[order] >= cut]
            elif top_k is not None:
                order = order[:top_k]
            results.append([LabelScore(label=labels[j], score=float(row[j])) for j in order])
        return results

    def scores(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        sliding_window: bool = False,
        *,
        stride: int | None = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """(N, num_labels) float32 probabilities (softmax, or sigmoid for multi_label), request order.

        ``sliding_window``: a text longer than ``max_seq_length`` is read as overlapping windows
        (``stride`` tokens apart, default half a window) whose probabilities are averaged.
        """
        self._check(texts, pairs, batch_size)
        out = np.empty((len(texts), self.num_labels), dtype=np.float32)
        if not len(texts):
            return out
        if sliding_window:
            groups = [self.encoder.windows(text, stride) for text in texts]
        else:
            groups = [[enc] for enc in self.encoder.encode(texts, pairs)]
        todo = list(range(len(texts)))
        keys: list[Hashable] = []
        if self._cache is not None:
            todo = []
            for i, group in enumerate(groups):
                key: Hashable = tuple((tuple(e.ids), tuple(e.type_ids)) for e in group)
                if (hit := self._cache.get(key)) is not None:
                    out[i] = hit
                else:
                    todo.append(i)
                    keys.append(key)
        if todo:
            owners = np.array([i for i in todo for _ in groups[i]])
            flat = [enc for i in todo for enc in groups[i]]
            probs = self._run(flat, batch_size)
            sums = np.zeros_like(out, dtype=np.float64)
            np.add.at(sums, owners, probs)
            counts = np.bincount(owners, minlength=len(texts))[todo]
            out[todo] = sums[todo] / counts[:, None]  # the mean over windows (one window: itself)
            if self._cache is not None:
                for i, key in zip(todo, keys, strict=True):
                    self._cache.put(key, out[i])
        return out

    def warmup(self) -> None:
        """Run one tiny input so that the first real request does not pay ORT's lazy set-up."""
        self.scores([""], [""] if self.manifest.text_pair else None)

    # -- internals --------------------------------------------------------------------------------
    def _check(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> None:
        """The calling contract (a programming error if broken; requests are checked before they get here)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a list of strings")
        if (pairs is not None) != self.manifest.text_pair:
            raise ValueError("pairs must be given exactly when the model classifies text pairs")
        if pairs is not None and (isinstance(pairs, str) or len(pairs) != len(texts)):
            raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs; they must match one to one")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    def _run(self, encoded: list[Encoded], batch_size: int) -> np.ndarray:
        """Probabilities for encoded inputs: length-sorted micro-batches, returned in input order."""
        probs = np.empty((len(encoded), self.num_labels), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda j: len(encoded[j].ids))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            arrays = self.encoder.pad([encoded[j] for j in chunk])
            logits = self.session.run([self._output], {name: arrays[name] for name in self._inputs})[0]
            probs[chunk] = probabilities(logits, self.problem_type)
        return probs
