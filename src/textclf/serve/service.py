"""One invocation, HTTP aside: parameters -> rules before -> predict -> rules after.

The Flask app decodes and encodes; the predictor runs the model; this module joins them with the
request's parameters (from the JSON body's ``parameters`` and the
``X-Amzn-SageMaker-Custom-Attributes`` header) and the business rules.

It also bounds what one request may cost (``Limits``), each bound a setting named in the answer
when it is exceeded: texts (``TEXTCLF_MAX_BATCH``, 413), sliding windows (``TEXTCLF_MAX_WINDOWS``,
413, counted from token counts before any window is built), the stride (``TEXTCLF_MIN_STRIDE``,
400) and time (``TEXTCLF_REQUEST_DEADLINE``, 413: the model stops, and the worker is free for the
next request, instead of computing on after nginx has answered 504).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from textclf.contract.model_dir import Manifest, ProblemType
from textclf.errors import RequestError
from textclf.model.prediction import Prediction
from textclf.serve.codecs import CSV, Inputs
from textclf.serve.rules import HookContractError, RuleContext, RuleSet
from textclf.serve.settings import FALSE, TRUE

PARAMETERS = ("top_k", "threshold", "return_all_scores", "sliding_window", "stride", "min_confidence")
IGNORED_PARAMETERS = ("truncation", "padding")  # Hugging Face pipeline options: truncation follows the manifest
ALL = frozenset({"all", "none", "null"})  # top_k=all in a custom attribute: every label


class Budget(Protocol):
    """``textclf.model.predictor.Budget``, restated: the supervisor imports this module and must not
    import onnxruntime (which the predictor does)."""

    @property
    def deadline(self) -> float | None: ...
    def admit(self, inputs: int) -> None: ...
    def ran(self, inputs: int) -> None: ...


class Model(Protocol):
    """What the service needs of ``textclf.model.predictor.Classifier``.

    ``predict`` calls ``budget.admit`` with the number of model inputs before it builds them, and
    raises ``TimeoutError`` (``DeadlineExceededError``) once ``budget.deadline`` has passed.
    """

    @property
    def manifest(self) -> Manifest: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def problem_type(self) -> ProblemType: ...
    @property
    def text_pair(self) -> bool: ...
    @property
    def max_stride(self) -> int: ...  # content tokens per sliding window

    def predict(
        self,
        texts: list[str],
        pairs: list[str] | None = None,
        *,
        top_k: int | None = 1,
        threshold: float | None = None,
        sliding_window: bool = False,
        stride: int | None = None,
        batch_size: int = 32,
        budget: Budget | None = None,
    ) -> list[Prediction]: ...


@dataclass(frozen=True)
class Limits:
    """What one request may cost; 0 / ``None``: unbounded (``textclf.serve.routes`` passes the settings')."""

    max_windows: int = 0  # model inputs of one sliding_window request (TEXTCLF_MAX_WINDOWS)
    min_stride: int = 1  # tokens (TEXTCLF_MIN_STRIDE)
    deadline_s: float | None = None  # seconds from the request's start (TEXTCLF_REQUEST_DEADLINE)


NO_LIMITS = Limits()


@dataclass
class Usage:
    """What a request cost, for its log line; filled in as it goes, so a refused or stopped request has it too."""

    model_inputs: int = 0  # inputs the model classified: texts, or windows (cache hits excluded)


class _RequestBudget:
    """The ``Budget`` of one request: refuses too many windows before they are built, counts what ran."""

    def __init__(self, limits: Limits, params: PredictionParameters, deadline: float | None, usage: Usage) -> None:
        self.limits = limits
        self.params = params
        self._deadline = deadline
        self.usage = usage

    @property
    def deadline(self) -> float | None:
        return self._deadline

    def admit(self, inputs: int) -> None:
        limit = self.limits.max_windows
        if self.params.sliding_window and limit and inputs > limit:
            stride = f"stride {self.params.stride}" if self.params.stride else "the default stride"
            raise RequestError(
                f"sliding_window with {stride} makes {inputs} windows in this request, over the limit of {limit} "
                "(TEXTCLF_MAX_WINDOWS): split the request or use a larger stride",
                status=413,
            )

    def ran(self, inputs: int) -> None:
        self.usage.model_inputs += inputs


@dataclass(frozen=True)
class PredictionParameters:
    top_k: int | None = 1  # None: every label
    threshold: float | None = None  # multi-label models: the score a label needs (default: the manifest's)
    sliding_window: bool = False
    stride: int | None = None
    min_confidence: float | None = None  # None: TEXTCLF_MIN_CONFIDENCE

    def as_dict(self) -> dict[str, Any]:
        # Shallow: the fields are numbers, booleans and None (dataclasses.asdict deep-copies, which
        # showed in the single-text request's profile).
        return {name: getattr(self, name) for name in _PARAMETER_FIELDS}

    def check(self, model: Model, pairs: bool, min_stride: int = 1) -> None:
        """What only the model can tell: the one place a request's parameters meet the model.

        ``min_stride`` (``TEXTCLF_MIN_STRIDE``) applies up to the model's longest stride, so that
        every model takes some stride whatever the setting.
        """
        if self.threshold is not None and model.problem_type != "multi_label":
            raise RequestError("threshold applies to multi-label models only; this model is single-label")
        if self.sliding_window and pairs:
            raise RequestError("sliding_window works on single texts, not on text pairs")
        if not self.sliding_window or self.stride is None:
            return
        lowest = min(min_stride, model.max_stride)
        if self.stride < lowest:
            raise RequestError(
                f"stride {self.stride} is below the minimum of {lowest} tokens (TEXTCLF_MIN_STRIDE): "
                f"use a stride from {lowest} to {model.max_stride}"
            )
        if self.stride > model.max_stride:
            raise RequestError(f"stride must be an integer from {lowest} to {model.max_stride}, got {self.stride}")


_PARAMETER_FIELDS = tuple(f.name for f in fields(PredictionParameters))


# -- custom attributes ----------------------------------------------------------------------------------
def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """``"threshold=0.8; trace=abc"`` -> ``{"threshold": "0.8", "trace": "abc"}``; a bare ``key`` maps to ""."""
    attributes: dict[str, str] = {}
    for item in (header or "").split(";"):
        key, _, value = item.partition("=")
        if key.strip():
            attributes[key.strip()] = value.strip()
    return attributes


def format_custom_attributes(attributes: Mapping[str, str]) -> str:
    return ";".join(f"{key}={value}" if value != "" else key for key, value in attributes.items())


# -- parameters -----------------------------------------------------------------------------------------
def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _from_json(key: str, value: Any) -> Any:
    where = f'parameter "{key}"'
    if key == "top_k":
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        raise RequestError(f"{where} must be a positive integer or null (every label), got {value!r}")
    if key in ("threshold", "min_confidence"):
        if _number(value) and 0.0 <= value <= 1.0:
            return float(value)
        raise RequestError(f"{where} must be a number between 0 and 1, got {value!r}")
    if key in ("return_all_scores", "sliding_window"):
        if isinstance(value, bool):
            return value
        raise RequestError(f"{where} must be true or false, got {value!r}")
    if key == "stride":
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise RequestError(f"{where} must be a positive integer, got {value!r}")
    raise AssertionError(key)


def _from_attribute(key: str, text: str) -> Any:
    where = f"custom attribute {key}={text!r}"
    value = text.strip().lower()
    if key == "top_k":
        if value in ALL:
            return None
        if value.isdigit() and int(value) >= 1:
            return int(value)
        raise RequestError(f"{where}: top_k must be a positive integer or 'all'")
    if key in ("threshold", "min_confidence"):
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if 0.0 <= number <= 1.0:
            return number
        raise RequestError(f"{where}: {key} must be a number between 0 and 1")
    if key in ("return_all_scores", "sliding_window"):
        if value in TRUE - {""}:
            return True
        if value in FALSE - {""}:
            return False
        raise RequestError(f"{where}: {key} must be true or false")
    if key == "stride":
        if value.isdigit() and int(value) >= 1:
            return int(value)
        raise RequestError(f"{where}: stride must be a positive integer")
    raise AssertionError(key)


def resolve_parameters(body: Mapping[str, Any], attributes: Mapping[str, str]) -> PredictionParameters:
    """Body ``parameters`` first, then custom attributes (which win); unknown body keys are a 400,
    unknown attributes are left to the rules (they are free-form)."""
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key in IGNORED_PARAMETERS:
            continue
        if key not in PARAMETERS:
            raise RequestError(f'unknown parameter "{key}": the parameters are {", ".join(PARAMETERS)}')
        values[key] = _from_json(key, value)
    for key, value in attributes.items():
        if key in PARAMETERS:
            values[key] = _from_attribute(key, value)
    if values.pop("return_all_scores", False):
        values["top_k"] = None
    return PredictionParameters(**values)


# -- the service -----------------------------------------------------------------------------------------
class InferenceService:
    """The loaded model and rules of one worker, and how one request goes through them."""

    def __init__(
        self,
        model: Model,
        rules: RuleSet,
        *,
        max_batch: int = 0,
        batch_size: int = 32,
        exclusive: bool = False,
    ) -> None:
        self.model = model
        self.rules = rules
        self.max_batch = max_batch
        self.batch_size = batch_size
        # With several intra-op threads, one model run already fills this worker's cores: run one at a
        # time. With one thread per run, concurrent runs in a worker only time-slice (no spinning pools).
        self._lock = threading.Lock() if exclusive else None

    def _slot(self, deadline: float | None, limits: Limits) -> contextlib.AbstractContextManager[None]:
        """This worker's turn at the model: at once without ``exclusive`` (a null context, no generator
        per request), else the lock, whose wait ends at the deadline."""
        return contextlib.nullcontext() if self._lock is None else self._locked(self._lock, deadline, limits)

    @staticmethod
    @contextlib.contextmanager
    def _locked(lock: threading.Lock, deadline: float | None, limits: Limits) -> Iterator[None]:
        """Hold ``lock`` for the block; waiting for it ends at the deadline (503: the worker was busy with
        others' requests the whole time, which is no fault of this one)."""
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not lock.acquire(timeout=wait):
            raise RequestError(
                f"this worker was busy with other requests for the whole request deadline of {limits.deadline_s:g} s "
                "(TEXTCLF_REQUEST_DEADLINE): retry later, or add instances",
                status=503,
            )
        try:
            yield
        finally:
            lock.release()

    def invoke(
        self,
        inputs: Inputs,
        attributes: Mapping[str, str],
        request_id: str,
        *,
        limits: Limits = NO_LIMITS,
        started: float | None = None,
        usage: Usage | None = None,
    ) -> tuple[list[Prediction], RuleContext]:
        """Classify one request. ``started``: its ``time.monotonic()`` start, from which the deadline
        counts (default: now); ``usage`` is filled in even when the request fails."""
        started = time.monotonic() if started is None else started
        deadline = None if limits.deadline_s is None else started + limits.deadline_s
        usage = Usage() if usage is None else usage
        count = len(inputs.texts)
        if self.max_batch and count > self.max_batch:
            raise RequestError(
                f"{count} texts in one request exceed the limit of {self.max_batch} (TEXTCLF_MAX_BATCH): "
                "split the request",
                status=413,
            )
        if inputs.pairs is not None and not self.model.text_pair and inputs.content_type == CSV:
            raise RequestError(
                "a CSV row with two columns is a text pair, but this model classifies single texts: "
                "quote texts that contain commas"
            )
        params = resolve_parameters(inputs.parameters, attributes)
        resolved = params.as_dict()
        context = RuleContext(
            request_id=request_id,
            attributes=dict(attributes),
            parameters=dict(resolved),
            labels=list(self.model.labels),
            content_type=inputs.content_type,
            text_pairs=None if inputs.pairs is None else list(inputs.pairs),
            response_attributes=dict(attributes),
        )
        texts = self.rules.before(list(inputs.texts), context)
        pairs = context.text_pairs
        if pairs is not None and len(pairs) != len(texts):
            raise HookContractError(f"a before() hook left {len(pairs)} text pairs for {len(texts)} texts")
        if context.parameters != resolved:  # a before() hook changed them
            try:
                params = PredictionParameters(**{k: context.parameters[k] for k in resolved})
            except KeyError as exc:
                removed = f"a before() hook removed the parameter {exc} from context.parameters"
                raise HookContractError(removed) from None
        # Checked after the hooks, which may change texts, pairs and parameters.
        if pairs is not None and not self.model.text_pair:
            raise RequestError("this model classifies single texts; it takes no text pairs")
        if pairs is None and self.model.text_pair:
            raise RequestError("this model classifies text pairs: give a second text (pair) for every text")
        params.check(self.model, pairs is not None, limits.min_stride)
        budget = _RequestBudget(limits, params, deadline, usage)
        try:
            with self._slot(deadline, limits):
                predictions = self.model.predict(
                    texts,
                    pairs,
                    top_k=params.top_k,
                    threshold=params.threshold,
                    sliding_window=params.sliding_window,
                    stride=params.stride,
                    batch_size=self.batch_size,
                    budget=budget,
                )
        except TimeoutError as exc:
            if limits.deadline_s is None:
                raise  # not ours: without a deadline the predictor never stops a call
            # Once it has the model, nothing but the request's own size keeps it past the deadline: the
            # client's to fix, so a 4xx. 413 ("more than the server will process"), like the other size
            # limits; not 408, which says the client was slow to send (nginx answers that here, and
            # clients may repeat a 408 at once), nor a 5xx, which in this server means a bug.
            larger = " or use a larger stride" if params.sliding_window else ""
            raise RequestError(
                f"the request did not finish within the deadline of {limits.deadline_s:g} s "
                f"(TEXTCLF_REQUEST_DEADLINE): {exc}; split the request{larger}",
                status=413,
            ) from None
        return self.rules.after(texts, predictions, context), context
