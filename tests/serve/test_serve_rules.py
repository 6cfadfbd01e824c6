"""Business-rule hooks and their loading, declarative rules, request parameters and custom
attributes; the service with a stand-in model (the HTTP tests use the real one)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

from textclf.errors import ConfigError, RequestError, RuleRejection
from textclf.serve.codecs import CSV, JSON, Inputs
from textclf.serve.rules import (
    DeclarativeRules,
    HookContractError,
    RuleContext,
    RuleSet,
    RulesLoadError,
    load_file,
    load_spec,
)
from textclf.serve.service import (
    InferenceService,
    PredictionParameters,
    format_custom_attributes,
    parse_custom_attributes,
    resolve_parameters,
)

LABELS = ["neg", "pos"]


def _write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return path


def _context(**parameters: object) -> RuleContext:
    return RuleContext("rid", {}, PredictionParameters(**parameters).as_dict(), LABELS)  # type: ignore[arg-type]


# -- loading -----------------------------------------------------------------------------------------------
def test_model_code_rules_and_env_rules_both_run_model_first(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    _write(
        model_dir / "code" / "helper.py",
        "SUFFIX = '!'\n",
    )
    _write(
        model_dir / "code" / "rules.py",
        """
        from .helper import SUFFIX  # code/ is the package's folder (never on sys.path)

        def before(texts, context):
            return [t + SUFFIX for t in texts]
        """,
    )
    env_rules = _write(
        tmp_path / "elsewhere" / "env_rules.py",
        """
        class Rules:
            def before(self, texts, context):
                return [t + "?" for t in texts]
        """,
    )
    rules = RuleSet.load(model_dir, LABELS, f"{env_rules}:Rules")
    assert len(rules.hooks) == 2
    assert rules.before(["a"], _context()) == ["a!?"]


def test_code_does_not_shadow_installed_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """code/ is never put on sys.path: with a code/json.py, ``import json`` in the hook (and anywhere
    else, later) still means the standard library's."""
    import json as stdlib_json

    code = tmp_path / "model" / "code"
    _write(code / "json.py", "SHADOW = True\n\ndef dumps(obj):\n    return 'shadowed'\n")
    _write(code / "colorsys.py", "SHADOW = True\n")
    _write(
        code / "rules.py",
        """
        import json

        def before(texts, context):
            return [json.dumps(t) + str(getattr(json, "SHADOW", False)) for t in texts]
        """,
    )
    monkeypatch.delitem(sys.modules, "json")  # so that the hook's `import json` really searches
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    path_before = list(sys.path)
    rules = RuleSet.load(tmp_path / "model", LABELS)
    assert rules.before(["a"], _context()) == ['"a"False']
    assert sys.path == path_before
    assert not hasattr(sys.modules["json"], "SHADOW")
    import colorsys  # imported after the hooks: must still be the standard library's

    assert not hasattr(colorsys, "SHADOW") and Path(colorsys.__file__).parent == Path(stdlib_json.__file__).parents[1]


def test_hooks_import_sibling_modules_and_subpackages(tmp_path: Path) -> None:
    code = tmp_path / "model" / "code"
    _write(code / "helper.py", "MARK = 'h'\n")
    _write(code / "json.py", "MARK = 'own json'\n")  # the hook's own module, named like a standard one
    _write(code / "lib" / "__init__.py", "")
    _write(code / "lib" / "deep.py", "from .. import helper\n\nMARK = helper.MARK + '/deep'\n")
    _write(code / "plain" / "mod.py", "MARK = 'namespace'\n")  # a folder without __init__.py
    _write(
        code / "rules.py",
        """
        import json

        from . import helper
        from . import json as own_json
        from .lib import deep
        from .plain import mod

        def after(texts, predictions, context):
            label = f"{helper.MARK}|{deep.MARK}|{mod.MARK}|{own_json.MARK}|{json.dumps(1)}"
            return [[{"label": label, "score": 1.0}] for _ in texts]
        """,
    )
    rules = RuleSet.load(tmp_path / "model", LABELS)
    result = rules.after(["x"], [[{"label": "neg", "score": 0.5}]], _context())
    assert result[0][0]["label"] == "h|h/deep|namespace|own json|1"
    assert sys.modules["textclf_model_code.rules"].__file__ == str(code / "rules.py")


def test_a_reload_does_not_reuse_another_directory_s_modules(tmp_path: Path) -> None:
    for name in ("one", "two"):
        _write(tmp_path / name / "code" / "helper.py", f"NAME = {name!r}\n")
        _write(
            tmp_path / name / "code" / "rules.py",
            "from . import helper\n\ndef before(texts, context):\n    return [helper.NAME for _ in texts]\n",
        )
    assert RuleSet.load(tmp_path / "one", LABELS).before(["x"], _context()) == ["one"]
    assert RuleSet.load(tmp_path / "two", LABELS).before(["x"], _context()) == ["two"]


def test_hooks_neither_write_nor_run_bytecode(tmp_path: Path) -> None:
    """A __pycache__ written into the model directory would be an unlisted file; one planted there
    (an unchecked-hash .pyc, which Python runs without looking at the source) must not replace the
    sealed source."""
    import py_compile

    code = tmp_path / "model" / "code"
    _write(code / "helper.py", "MARK = 'source'\n")
    _write(
        code / "rules.py",
        "def before(texts, context):\n    from . import helper\n\n    return [helper.MARK for _ in texts]\n",
    )
    planted = "def before(texts, context):\n    return ['planted bytecode' for _ in texts]\n"
    for name in ("rules", "helper"):
        source = _write(tmp_path / "planted" / f"{name}.py", planted if name == "rules" else "MARK = 'planted'\n")
        py_compile.compile(
            str(source),
            importlib.util.cache_from_source(str(code / f"{name}.py")),
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    before = sorted(p.name for p in (code / "__pycache__").iterdir())
    assert RuleSet.load(tmp_path / "model", LABELS).before(["x"], _context()) == ["source"]
    assert sorted(p.name for p in (code / "__pycache__").iterdir()) == before  # nothing written
    _write(tmp_path / "fresh" / "code" / "rules.py", "def before(texts, context):\n    return texts\n")
    RuleSet.load(tmp_path / "fresh", LABELS)
    assert not (tmp_path / "fresh" / "code" / "__pycache__").exists()


def test_env_rules_file_imports_its_siblings_too(tmp_path: Path) -> None:
    _write(tmp_path / "shop" / "words.py", "BANNED = 'bad'\n")
    path = _write(
        tmp_path / "shop" / "shop_rules.py",
        """
        from .words import BANNED

        def before(texts, context):
            return [t.replace(BANNED, "***") for t in texts]
        """,
    )
    assert load_spec(str(path)).before(["a bad day"], _context()) == ["a *** day"]  # type: ignore[misc]


def test_module_spec_from_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(
        tmp_path / "shop_rules" / "__init__.py",
        """
        def after(texts, predictions, context):
            return [[{"label": "shop", "score": 1.0}] for _ in texts]
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    hook = load_spec("shop_rules")
    assert hook.before is None and hook.after is not None
    assert RuleSet([hook]).after(["x"], [[{"label": "neg", "score": 0.9}]], _context()) == [
        [{"label": "shop", "score": 1.0}]
    ]
    sys.modules.pop("shop_rules", None)


@pytest.mark.parametrize(
    ("code", "spec_suffix", "fragment"),
    [
        ("def before(texts, context)\n    return texts\n", "", "syntax error in"),
        ("import no_such_module_xyz\n", "", "ModuleNotFoundError"),
        ("X = 1\n", "", "define neither before"),
        ("before = 3\n", "", "before is not a function"),
        ("def before(t, c):\n    return t\n", ":Missing", "'Missing' not found"),
        ("raise RuntimeError('boom at import')\n", "", "RuntimeError: boom at import"),
    ],
)
def test_broken_hooks_fail_to_load_with_a_message(tmp_path: Path, code: str, spec_suffix: str, fragment: str) -> None:
    path = _write(tmp_path / "bad_rules.py", code)
    with pytest.raises(RulesLoadError) as info:
        load_spec(f"{path}{spec_suffix}")
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_rules_file_and_module(tmp_path: Path) -> None:
    with pytest.raises(RulesLoadError, match="does not exist"):
        load_file(tmp_path / "nope.py")
    with pytest.raises(RulesLoadError, match="TEXTCLF_RULES"):
        load_spec("no_such_package_xyz.rules:Rules")


def test_label_map_must_name_model_labels(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels the model does not have: LABEL_9"):
        RuleSet.load(tmp_path, LABELS, declarative=DeclarativeRules(label_map={"LABEL_9": "x"}))


# -- running -----------------------------------------------------------------------------------------------
def test_rule_rejection_must_be_4xx() -> None:
    assert RuleRejection("no", status=451).status == 451
    assert isinstance(RuleRejection("no"), RequestError)
    with pytest.raises(ValueError, match="4xx"):
        RuleRejection("no", status=500)


def test_hooks_that_break_their_contract(tmp_path: Path) -> None:
    short = load_file(
        _write(tmp_path / "r1.py", "def before(texts, context):\n    return texts[:-1]\n"), module_name="r1"
    )
    with pytest.raises(HookContractError, match="must return a list of 2 texts"):
        RuleSet([short]).before(["a", "b"], _context())
    bad = load_file(
        _write(tmp_path / "r2.py", "def after(texts, p, context):\n    return [[{'x': 1}]]\n"), module_name="r2"
    )
    with pytest.raises(HookContractError, match='"label": str'):
        RuleSet([bad]).after(["a"], [[{"label": "neg", "score": 0.5}]], _context())
    none = load_file(_write(tmp_path / "r3.py", "def before(texts, context):\n    return None\n"), module_name="r3")
    assert RuleSet([none]).before(["a"], _context()) == ["a"]  # None: unchanged


def test_declarative_min_confidence_then_label_map() -> None:
    rules = RuleSet([], DeclarativeRules(min_confidence=0.7, uncertain_label="unsure", label_map={"pos": "positive"}))
    predictions = [
        [{"label": "pos", "score": 0.9}, {"label": "neg", "score": 0.1}],
        [{"label": "pos", "score": 0.6}, {"label": "neg", "score": 0.4}],
        [],
    ]
    assert rules.after(["a", "b", "c"], predictions, _context()) == [
        [{"label": "positive", "score": 0.9}, {"label": "neg", "score": 0.1}],
        [{"label": "unsure", "score": 0.6}, {"label": "neg", "score": 0.4}],
        [],
    ]
    # a request's min_confidence overrides TEXTCLF_MIN_CONFIDENCE
    again = [[{"label": "pos", "score": 0.9}]]
    assert rules.after(["a"], again, _context(min_confidence=0.95))[0][0]["label"] == "unsure"


# -- parameters and custom attributes ---------------------------------------------------------------------
def test_custom_attributes_round_trip() -> None:
    attrs = parse_custom_attributes(" threshold=0.8; trace=abc=def ;flag;;")
    assert attrs == {"threshold": "0.8", "trace": "abc=def", "flag": ""}
    assert format_custom_attributes(attrs) == "threshold=0.8;trace=abc=def;flag"
    assert parse_custom_attributes(None) == {}


def test_parameters_body_then_attributes() -> None:
    p = resolve_parameters({"top_k": 1, "sliding_window": True, "truncation": True}, {"top_k": "2", "trace": "x"})
    assert (p.top_k, p.sliding_window) == (2, True)
    assert resolve_parameters({"return_all_scores": True}, {}).top_k is None
    assert resolve_parameters({"top_k": None}, {}).top_k is None
    assert resolve_parameters(
        {}, {"top_k": "all", "threshold": "0.25", "min_confidence": "0.5"}
    ) == PredictionParameters(top_k=None, threshold=0.25, min_confidence=0.5)
    assert resolve_parameters({}, {"sliding_window": "TRUE", "stride": "16"}).stride == 16


@pytest.mark.parametrize(
    ("body", "attributes", "fragment"),
    [
        ({"top_k": 0}, {}, 'parameter "top_k" must be a positive integer'),
        ({"top_k": True}, {}, 'parameter "top_k"'),
        ({"threshold": 2}, {}, 'parameter "threshold" must be a number between 0 and 1'),
        ({"sliding_window": "yes"}, {}, 'parameter "sliding_window" must be true or false'),
        ({"topk": 2}, {}, 'unknown parameter "topk"'),
        ({}, {"top_k": "two"}, "custom attribute top_k='two'"),
        ({}, {"threshold": "high"}, "custom attribute threshold='high'"),
        ({}, {"min_confidence": "-1"}, "custom attribute min_confidence='-1'"),
        ({}, {"sliding_window": "maybe"}, "custom attribute sliding_window='maybe'"),
    ],
)
def test_bad_parameters_are_400_naming_the_key(body: dict, attributes: dict, fragment: str) -> None:
    with pytest.raises(RequestError) as info:
        resolve_parameters(body, attributes)
    assert info.value.status == 400
    assert fragment in str(info.value)


class _Model:
    labels = LABELS
    problem_type = "single_label"
    text_pair = False
    max_stride = 126

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def predict(self, texts, pairs=None, **kwargs):
        self.calls.append({"texts": texts, "pairs": pairs, **kwargs})
        return [[{"label": "pos", "score": 0.8}, {"label": "neg", "score": 0.2}][: kwargs["top_k"] or 2] for _ in texts]


def test_service_flow_and_limits(tmp_path: Path) -> None:
    hook = load_file(
        _write(
            tmp_path / "flow_rules.py",
            """
            from textclf.errors import RuleRejection

            def before(texts, context):
                if "secret" in texts:
                    raise RuleRejection("no secrets", status=422)
                context.parameters["top_k"] = None  # hooks may change parameters
                context.extra["seen"] = len(texts)
                return [t.lower() for t in texts]

            def after(texts, predictions, context):
                context.response_attributes["seen"] = str(context.extra["seen"])
                return predictions
            """,
        ),
        module_name="flow_rules",
    )
    model = _Model()
    service = InferenceService(model, RuleSet([hook]), max_batch=3, batch_size=7)
    results, context = service.invoke(Inputs(["A", "B"], None, False, JSON), {"top_k": "1", "x": "y"}, "rid")
    assert model.calls[-1]["texts"] == ["a", "b"] and model.calls[-1]["top_k"] is None
    assert model.calls[-1]["batch_size"] == 7
    assert len(results[0]) == 2
    assert context.response_attributes == {"top_k": "1", "x": "y", "seen": "2"}
    with pytest.raises(RuleRejection, match="no secrets"):
        service.invoke(Inputs(["secret"], None, False, JSON), {}, "rid")
    with pytest.raises(RequestError) as info:
        service.invoke(Inputs(["a"] * 4, None, False, JSON), {}, "rid")
    assert info.value.status == 413 and "TEXTCLF_MAX_BATCH" in str(info.value)
    with pytest.raises(RequestError, match="quote texts that contain commas"):
        service.invoke(Inputs(["a"], ["b"], False, CSV), {}, "rid")
