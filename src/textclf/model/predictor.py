"""Texts in, labels and scores out: a verified model directory run by ONNX Runtime on CPU.

This is what ``serve`` loads in each gunicorn worker (after the fork: ORT sessions do not survive
one), what ``textclf predict`` and the benchmarks call, and the Python API. It imports neither
torch nor transformers: the slim serving image has neither. Inputs are built by the same
``TextEncoder`` that training used, so serving sees exactly the inputs the model learned on.

Batches are padded dynamically and formed from length-sorted inputs (short texts are not padded to
the length of a long neighbour), then results are put back in request order. With an INT8 model a
text's scores move slightly (~1e-4) with its batch-mates: dynamic quantization picks one activation
scale per batch tensor. Labels do not move unless two scores are that close.

A caller may bound a call with a ``Budget`` (the serving layer does, per request): it is told how
many model inputs the call needs before any sliding window is built, and may refuse; and it sets a
deadline, checked between micro-batches and also inside one (ONNX Runtime's ``RunOptions.terminate``,
set by the process's ``textclf.model.watchdog``), so a call past its deadline stops within one kernel
and frees its thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from textclf.contract.model_dir import MODEL_FILE, Manifest, ProblemType, read_manifest
from textclf.errors import ArtifactError
from textclf.model.cache import CacheInfo, ResultCache
from textclf.model.encoding import Encoded, TextEncoder
from textclf.model.prediction import LabelScore, Prediction, probabilities
from textclf.model.watchdog import WATCHDOG


class Budget(Protocol):
    """Bounds on one ``scores`` call; ``textclf.serve.service`` implements one per request."""

    @property
    def deadline(self) -> float | None:
        """The ``time.monotonic()`` instant by which the call must end (``None``: no deadline)."""
        ...

    def admit(self, inputs: int) -> None:
        """Called once with the number of model inputs the call needs (texts, or their windows),
        after tokenizing and before anything else is built or run; raises to refuse the call."""
        ...

    def ran(self, inputs: int) -> None:
        """Called after each micro-batch with the number of inputs it classified."""
        ...


class DeadlineExceededError(TimeoutError):
    """The budget's deadline passed before every input was classified; nothing is returned."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"the model classified {done} of {total} inputs before it was stopped")
        self.done = done
        self.total = total


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
        budget: Budget | None = None,
    ) -> list[Prediction]:
        """Per input, ``[{"label", "score"}, ...]`` sorted by score, descending, in request order.

        single_label: the ``top_k`` best labels (``None``: all). multi_label: the labels whose
        sigmoid score is at least ``threshold`` (default: the manifest's), or every label with its
        score when ``top_k`` is ``None``; an integer ``top_k`` does not cap a multi-label set.
        Parameters are taken as given: requests are validated by the serving layer
        (``textclf.serve.service``), not here. ``budget``: see ``scores``.
        """
        cut = self.manifest.multi_label_threshold if threshold is None else float(threshold)
        probs = self.scores(
            texts, pairs, sliding_window=sliding_window, stride=stride, batch_size=batch_size, budget=budget
        )
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
        budget: Budget | None = None,
    ) -> np.ndarray:
        """(N, num_labels) float32 probabilities (softmax, or sigmoid for multi_label), request order.

        ``sliding_window``: a text longer than ``max_seq_length`` is read as overlapping windows
        (``stride`` tokens apart, default half a window) whose probabilities are averaged.
        ``budget``: ``admit`` is called with the number of inputs (windows) before any is built,
        ``ran`` after each micro-batch; past its deadline the call raises ``DeadlineExceededError``.
        """
        self._check(texts, pairs, batch_size)
        out = np.empty((len(texts), self.num_labels), dtype=np.float32)
        if not len(texts):
            return out
        keys: list[Hashable]
        fetch: Callable[[int, int], Encoded]
        if sliding_window:
            content = self.encoder.content_ids(texts)
            step = self.encoder.window_step(stride)
            counts = np.array([len(self.encoder.window_starts(len(ids), step)) for ids in content], dtype=np.int64)
            sizes = np.array([len(ids) for ids in content], dtype=np.int64)

            def fetch(owner: int, start: int) -> Encoded:
                return self.encoder.window(content[owner], start)

            # A text's windows are determined by its content ids and the step (the encoder is fixed).
            keys = [("windows", step, tuple(ids)) for ids in content] if self._cache is not None else []
        else:
            encoded = self.encoder.encode(texts, pairs)
            step = 0  # one input per text, from its start
            counts = np.ones(len(texts), dtype=np.int64)
            sizes = np.array([len(e.ids) for e in encoded], dtype=np.int64)

            def fetch(owner: int, start: int) -> Encoded:
                return encoded[owner]

            keys = [(tuple(e.ids), tuple(e.type_ids)) for e in encoded] if self._cache is not None else []
        if budget is not None:
            budget.admit(int(counts.sum()))
        todo = list(range(len(texts)))
        if self._cache is not None:
            todo = []
            for i, key in enumerate(keys):
                if (hit := self._cache.get(key)) is not None:
                    out[i] = hit
                else:
                    todo.append(i)
        if todo:
            mine = np.array(todo, dtype=np.int64)
            if not sliding_window:  # one input per text: nothing to average
                out[mine] = self._run(lambda j: fetch(int(mine[j]), 0), sizes[mine], batch_size, budget)
            else:
                owners = np.repeat(mine, counts[mine])  # the text of each input, text by text
                firsts = np.repeat(np.cumsum(counts[mine]) - counts[mine], counts[mine])  # its text's first input
                starts = (np.arange(len(owners)) - firsts) * step  # window k of a text starts at k * step
                # the sort key of the micro-batches: content tokens in each input (the special tokens
                # are the same for all, so the order is that of the padded lengths)
                lengths = np.minimum(sizes[owners] - starts, self.encoder.window_size)
                probs = self._run(lambda j: fetch(int(owners[j]), int(starts[j])), lengths, batch_size, budget)
                sums = np.zeros_like(out, dtype=np.float64)
                np.add.at(sums, owners, probs)
                out[mine] = sums[mine] / counts[mine][:, None]  # the mean over each text's windows
            if self._cache is not None:
                for i in todo:
                    self._cache.put(keys[i], out[i])
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

    def _run(
        self, fetch: Callable[[int], Encoded], lengths: np.ndarray, batch_size: int, budget: Budget | None
    ) -> np.ndarray:
        """Probabilities for inputs ``fetch(0..n-1)`` (built one micro-batch at a time, in
        ``lengths`` order), returned in input order; stops at the budget's deadline."""
        total = len(lengths)
        probs = np.empty((total, self.num_labels), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        deadline = budget.deadline if budget is not None else None
        options = ort.RunOptions()
        with WATCHDOG.stop_at(deadline, options):
            for start in range(0, total, batch_size):
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceededError(start, total)
                chunk = order[start : start + batch_size]
                arrays = self.encoder.pad([fetch(int(j)) for j in chunk])
                try:
                    logits = self.session.run([self._output], {name: arrays[name] for name in self._inputs}, options)[0]
                except Exception:  # ORT raises its own Fail type, also for a terminated run
                    if options.terminate:
                        raise DeadlineExceededError(start, total) from None
                    raise
                probs[chunk] = probabilities(logits, self.problem_type)
                if budget is not None:
                    budget.ran(len(chunk))
        return probs
