"""Business rules around prediction: user hooks (code) and declarative rules (environment).

A *hook* is any module or object with a ``before`` and/or an ``after`` function::

    from textclf.errors import RuleRejection

    def before(texts, context):
        # inspect, clean or reject; return the texts to classify (same number, same order)
        if any("password" in t.lower() for t in texts):
            raise RuleRejection("texts must not contain credentials", status=422)
        return [t.strip() for t in texts]

    def after(texts, predictions, context):
        # relabel, threshold, override; return one prediction list per text
        if context.attributes.get("mode") == "strict":
            for result in predictions:
                if result and result[0]["score"] < 0.9:
                    result[0]["label"] = "review"
        return predictions

Returning ``None`` from a hook means "unchanged". ``predictions`` is, per text, the list of
``{"label", "score"}`` entries (best first) that will be sent back. ``context`` (a
``RuleContext``) carries the request id, the parsed custom attributes (every key, also those the
server does not know), the prediction parameters, the text pairs, the model's labels, and
``response_attributes``, which is sent back in ``X-Amzn-SageMaker-Custom-Attributes``.

Hooks are found in the model directory (``code/rules.py``) and through ``TEXTCLF_RULES``
(``package.module``, ``package.module:object``, ``/path/rules.py`` or ``/path/rules.py:object``; a
class is instantiated without arguments). When both exist both run, the model's first. A hook that
cannot be loaded stops ``serve`` with a message; ``RuleRejection`` answers the request with its 4xx
status and message; any other exception in a hook is a bug and answers 500 with a request id.

Hooks are trusted code: they run inside the endpoint with its permissions (its IAM role, its
network). ``code/`` is therefore sealed like the model (``textclf.contract.model_dir``: every file
listed with its sha256, unlisted ones refused; ``textclf seal`` after an edit). A hook file is never
imported by putting its folder on ``sys.path``, where a ``code/json.py`` would shadow the standard
library's ``json`` for the whole server: ``code/rules.py`` is the module ``textclf_model_code.rules``
of a package whose ``__path__`` is ``code/`` (a ``TEXTCLF_RULES`` file: ``textclf_env_rules.NAME``),
so it imports its helpers relatively (``from . import helper``, ``from .lib import x``) and its
absolute imports mean the installed packages. Modules of these packages are compiled from their
``.py`` source every time: no bytecode is read from a ``__pycache__`` (a planted ``.pyc`` is not
run) nor written into the model directory (it would be an unlisted file), and no compiled extension
module is loaded from there.

Declarative rules need no code and run after the hooks: ``TEXTCLF_MIN_CONFIDENCE`` (or the
request's ``min_confidence``) replaces the label of a top entry whose score is below it by
``TEXTCLF_UNCERTAIN_LABEL``; then ``TEXTCLF_LABEL_MAP`` renames labels.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from textclf.contract.model_dir import CODE_DIR
from textclf.errors import ConfigError
from textclf.model.prediction import Prediction

RULES_FILE = "rules.py"
MODEL_CODE_PACKAGE = "textclf_model_code"  # code/rules.py, and code/ as its package path
ENV_RULES_PACKAGE = "textclf_env_rules"  # a TEXTCLF_RULES file


class RulesLoadError(ConfigError):
    """A hook could not be imported or is not a hook: ``serve`` refuses to start."""


class HookContractError(Exception):
    """A hook returned something other than what it must: a bug in the hook (answered with 500)."""


@dataclass
class RuleContext:
    """What a hook may know about the request; ``extra`` passes state from ``before`` to ``after``."""

    request_id: str
    attributes: dict[str, str]
    parameters: dict[str, Any]
    labels: list[str]
    content_type: str = ""
    text_pairs: list[str] | None = None
    response_attributes: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hook:
    source: str  # where it was loaded from, for messages
    before: Callable[..., Any] | None
    after: Callable[..., Any] | None


def _as_hook(obj: Any, source: str) -> Hook:
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise RulesLoadError(f"business rules {source}: cannot instantiate {obj.__name__}(): {exc}") from exc
    before = getattr(obj, "before", None)
    after = getattr(obj, "after", None)
    for name, fn in (("before", before), ("after", after)):
        if fn is not None and not callable(fn):
            raise RulesLoadError(f"business rules {source}: {name} is not a function")
    if before is None and after is None:
        raise RulesLoadError(f"business rules {source} define neither before(texts, context) nor after(...)")
    return Hook(source, before, after)


def _load_error(source: str, exc: BaseException) -> RulesLoadError:
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}, line {exc.lineno}"
        return RulesLoadError(f"cannot load business rules {source}: syntax error in {where}: {exc.msg}")
    return RulesLoadError(f"cannot load business rules {source}: {type(exc).__name__}: {exc}")


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles a hook module from its ``.py`` file every time: never reads a ``__pycache__`` (a
    planted, unsealed ``.pyc`` would run instead of the sealed source) and never writes one (it would
    be an unlisted file in the sealed model directory). Hooks are small; compiling costs milliseconds."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _HookFinder(importlib.abc.MetaPathFinder):
    """Finds the submodules of hook packages (``from . import helper`` in ``code/rules.py``) in their
    package's folder: Python source only, through ``_SourceOnlyLoader``. It answers only for the
    packages it was given, so every other import goes on as usual."""

    def __init__(self) -> None:
        self.packages: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in self.packages or not path:
            return None
        for entry in path:
            finder = importlib.machinery.FileFinder(entry, (_SourceOnlyLoader, importlib.machinery.SOURCE_SUFFIXES))
            if (spec := finder.find_spec(fullname, target)) is not None:
                return spec
        return None


_HOOK_FINDER = _HookFinder()


def _forget(package: str) -> None:
    """Drop a previously loaded hook package and its submodules (a reload must not reuse them)."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def load_file(path: Path, attribute: str = "", module_name: str = "textclf_user_rules") -> Hook:
    """Import a Python file as a module of the package ``module_name`` whose ``__path__`` is the
    file's folder (see the module docstring: helpers import relatively; nothing goes on
    ``sys.path``), then take ``attribute`` or the module.

    The package itself is empty, not the file: had the file been the package, its own globals (an
    ``import json`` in it) would hide its folder's modules of the same name from ``from . import``."""
    source = f"{path}{':' + attribute if attribute else ''}"
    if not path.is_file():
        raise RulesLoadError(f"business rules file {path} does not exist")
    stem = path.stem if path.stem.isidentifier() else "hook"
    name = f"{module_name}.{stem}"
    loader = _SourceOnlyLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise RulesLoadError(f"business rules file {path} is not a Python module")
    _forget(module_name)
    _HOOK_FINDER.packages.add(module_name)
    if _HOOK_FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK_FINDER)
    package_spec = importlib.machinery.ModuleSpec(module_name, None, is_package=True)
    package_spec.submodule_search_locations = [str(path.parent.resolve())]
    package = importlib.util.module_from_spec(package_spec)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = package
    sys.modules[name] = module
    setattr(package, stem, module)
    try:
        loader.exec_module(module)
    except Exception as exc:
        _forget(module_name)
        raise _load_error(source, exc) from exc
    return _as_hook(_attribute(module, attribute, source) if attribute else module, source)


def _attribute(module: Any, dotted: str, source: str) -> Any:
    obj = module
    for part in dotted.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RulesLoadError(f"business rules {source}: {part!r} not found") from None
    return obj


def load_spec(spec: str) -> Hook:
    """Load ``TEXTCLF_RULES``: ``module``, ``module:object``, ``/path/file.py`` or ``/path/file.py:object``."""
    target, _, attribute = spec.partition(":")
    if target.endswith(".py") or "/" in target:
        return load_file(Path(target), attribute, module_name=ENV_RULES_PACKAGE)
    try:
        module = importlib.import_module(target)
    except Exception as exc:
        raise _load_error(f"{spec!r} (TEXTCLF_RULES)", exc) from exc
    source = f"{spec} (TEXTCLF_RULES)"
    return _as_hook(_attribute(module, attribute, source) if attribute else module, source)


@dataclass(frozen=True)
class DeclarativeRules:
    min_confidence: float | None = None
    uncertain_label: str = "uncertain"
    label_map: dict[str, str] = field(default_factory=dict)


class RuleSet:
    """The hooks (model's first, then ``TEXTCLF_RULES``) and the declarative rules, in order."""

    def __init__(self, hooks: Sequence[Hook] = (), declarative: DeclarativeRules | None = None) -> None:
        self.hooks = list(hooks)
        self.declarative = declarative or DeclarativeRules()

    @classmethod
    def load(
        cls, model_dir: Path, labels: Sequence[str], spec: str = "", declarative: DeclarativeRules | None = None
    ) -> RuleSet:
        """Load every hook and check the declarative rules against the model's labels."""
        declarative = declarative or DeclarativeRules()
        unknown = sorted(set(declarative.label_map) - set(labels))
        if unknown:
            raise ConfigError(
                f"TEXTCLF_LABEL_MAP renames labels the model does not have: {', '.join(unknown)} "
                f"(the model's labels: {', '.join(labels)})"
            )
        hooks = []
        model_rules = Path(model_dir) / CODE_DIR / RULES_FILE
        if model_rules.exists():
            hooks.append(load_file(model_rules, module_name=MODEL_CODE_PACKAGE))
        if spec:
            hooks.append(load_spec(spec))
        return cls(hooks, declarative)

    @property
    def sources(self) -> list[str]:
        return [hook.source for hook in self.hooks]

    def before(self, texts: list[str], context: RuleContext) -> list[str]:
        for hook in self.hooks:
            if hook.before is None:
                continue
            result = hook.before(list(texts), context)
            if result is None:
                continue
            if isinstance(result, str) or not isinstance(result, list | tuple) or len(result) != len(texts):
                raise HookContractError(
                    f"{hook.source}: before() must return a list of {len(texts)} texts (or None), "
                    f"got {_describe(result)}"
                )
            if not all(isinstance(t, str) for t in result):
                raise HookContractError(f"{hook.source}: before() returned a list that holds non-strings")
            texts = list(result)
        return texts

    def after(self, texts: list[str], predictions: list[Prediction], context: RuleContext) -> list[Prediction]:
        for hook in self.hooks:
            if hook.after is None:
                continue
            result = hook.after(texts, predictions, context)
            if result is None:
                continue
            if not isinstance(result, list | tuple) or len(result) != len(predictions):
                raise HookContractError(
                    f"{hook.source}: after() must return {len(predictions)} prediction lists (or None), "
                    f"got {_describe(result)}"
                )
            for entries in result:
                if not isinstance(entries, list) or not all(
                    isinstance(e, dict) and isinstance(e.get("label"), str) and isinstance(e.get("score"), int | float)
                    for e in entries
                ):
                    raise HookContractError(
                        f'{hook.source}: after() must return, per text, a list of {{"label": str, "score": number}}'
                    )
            predictions = list(result)
        return self._declarative(predictions, context)

    def _declarative(self, predictions: list[Prediction], context: RuleContext) -> list[Prediction]:
        rules = self.declarative
        floor = context.parameters.get("min_confidence")
        floor = rules.min_confidence if floor is None else floor
        if floor is not None:
            for entries in predictions:
                if entries and entries[0]["score"] < floor:
                    entries[0] = {**entries[0], "label": rules.uncertain_label}  # a hook's extra keys stay
        if rules.label_map:
            predictions = [
                [{**e, "label": rules.label_map.get(e["label"], e["label"])} for e in entries]
                for entries in predictions
            ]
        return predictions


def _describe(value: Any) -> str:
    if isinstance(value, list | tuple):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__
