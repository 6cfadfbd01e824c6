"""One invocation, HTTP aside: parameters -> rules before -> predict -> rules after.

The Flask app decodes and encodes; the predictor runs the model; this module joins them with the
request's parameters (from the JSON body's ``parameters`` and the
``X-Amzn-SageMaker-Custom-Attributes`` header) and the business rules.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
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


class Model(Protocol):
    """What the service needs of ``textclf.model.predictor.Classifier``."""

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
    ) -> list[Prediction]: ...


@dataclass(frozen=True)
class PredictionParameters:
    top_k: int | None = 1  # None: every label
    threshold: float | None = None  # multi-label models: the score a label needs (default: the manifest's)
    sliding_window: bool = False
    stride: int | None = None
    min_confidence: float | None = None  # None: TEXTCLF_MIN_CONFIDENCE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, model: Model, pairs: bool) -> None:
        """What only the model can tell: the one place a request's parameters meet the model."""
        if self.threshold is not None and model.problem_type != "multi_label":
            raise RequestError("threshold applies to multi-label models only; this model is single-label")
        if self.sliding_window and pairs:
            raise RequestError("sliding_window works on single texts, not on text pairs")
        if self.sliding_window and self.stride is not None and self.stride > model.max_stride:
            raise RequestError(f"stride must be an integer from 1 to {model.max_stride}, got {self.stride}")


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

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if self._lock is None:
            yield
            return
        with self._lock:
            yield

    def invoke(
        self, inputs: Inputs, attributes: Mapping[str, str], request_id: str
    ) -> tuple[list[Prediction], RuleContext]:
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
        context = RuleContext(
            request_id=request_id,
            attributes=dict(attributes),
            parameters=params.as_dict(),
            labels=list(self.model.labels),
            content_type=inputs.content_type,
            text_pairs=None if inputs.pairs is None else list(inputs.pairs),
            response_attributes=dict(attributes),
        )
        texts = self.rules.before(list(inputs.texts), context)
        pairs = context.text_pairs
        if pairs is not None and len(pairs) != len(texts):
            raise HookContractError(f"a before() hook left {len(pairs)} text pairs for {len(texts)} texts")
        try:  # a before() hook may have changed the parameters
            params = PredictionParameters(**{k: context.parameters[k] for k in params.as_dict()})
        except KeyError as exc:
            raise HookContractError(f"a before() hook removed the parameter {exc} from context.parameters") from None
        # Checked after the hooks, which may change texts, pairs and parameters.
        if pairs is not None and not self.model.text_pair:
            raise RequestError("this model classifies single texts; it takes no text pairs")
        if pairs is None and self.model.text_pair:
            raise RequestError("this model classifies text pairs: give a second text (pair) for every text")
        params.check(self.model, pairs is not None)
        with self._slot():
            predictions = self.model.predict(
                texts,
                pairs,
                top_k=params.top_k,
                threshold=params.threshold,
                sliding_window=params.sliding_window,
                stride=params.stride,
                batch_size=self.batch_size,
            )
        return self.rules.after(texts, predictions, context), context
