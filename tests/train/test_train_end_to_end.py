"""``python -m textclf.cli train`` end to end on an /opt/ml tree: it learns, and leaves every output.

The pretrained channel holds a tiny random BERT; the data is "keywords -> labels", so accuracy far
above chance on held-out rows can only come from training.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from support.training import FAST_HYPERPARAMETERS, KEYWORDS, SageMakerTree, new_tree, run_folder, write_jsonl
from textclf.contract.metrics import METRIC_DEFINITIONS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRIC_LINE = re.compile(r"^([a-z0-9_.\-A-Z]+)=([^;]*);$")


def metric_lines(stdout: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for line in stdout.splitlines() if (m := METRIC_LINE.match(line))]


def latest_values(stdout: str) -> dict[str, float]:
    """What a tuning job reads: the latest value of every metric definition, through its regex."""
    values = {}
    for definition in METRIC_DEFINITIONS:
        found = re.findall(definition["Regex"], stdout)
        if found:
            values[definition["Name"]] = float(found[-1])
    return values


def assert_outputs(sm: SageMakerTree) -> dict:
    assert not sm.failure.exists()
    report = json.loads((sm.output_data / "metrics.json").read_text())
    for key in ("objective", "labels", "best", "final", "test", "export", "history", "training"):
        assert key in report
    for name in ("confusion_matrix.png", "learning_curve.png"):
        assert (sm.output_data / name).read_bytes()[:8] == PNG_MAGIC
    return report


def test_train_learns_and_writes_every_output(sm: SageMakerTree) -> None:
    result = sm.run()
    assert result.returncode == 0, result.stdout + result.stderr
    stdout = result.stdout

    # Every metric line is well-formed and every definition the tuner uses finds its value.
    lines = metric_lines(stdout)
    assert lines, stdout
    names = [name for name, _ in lines]
    for name, value in lines:
        float(value)
        assert name in {d["Name"] for d in METRIC_DEFINITIONS} or name.startswith(("validation_", "test_")), name
    values = latest_values(stdout)
    for expected in ("train_loss", "learning_rate", "epoch", "validation_loss", "validation_accuracy",
                     "validation_macro_f1", "validation_micro_f1", "validation_weighted_f1", "test_accuracy",
                     "test_loss", "int8_validation_accuracy", "int8_label_agreement"):  # fmt: skip
        assert expected in values, expected
    assert {"validation_precision_sports", "validation_recall_food", "test_precision_tech"} <= set(names)
    # The objective comes last, after the INT8 lines, so a tuning job keeps the best model's value.
    assert names[-1] == "validation_accuracy"
    assert max(i for i, n in enumerate(names) if n.startswith("int8_")) < names.index("validation_accuracy", -12)

    # It learned: three classes (chance 1/3), far better on held-out validation and test rows.
    report = assert_outputs(sm)
    assert values["validation_accuracy"] == pytest.approx(report["objective"]["value"], abs=1e-6)
    assert report["objective"] == {"name": "validation_accuracy", "value": report["final"]["validation"]["accuracy"]}
    assert values["validation_accuracy"] >= 0.8
    assert report["test"]["accuracy"] >= 0.8
    assert report["export"]["int8_validation_accuracy"] >= 0.8

    history = report["history"]
    assert [h["step"] for h in history] == sorted({h["step"] for h in history}) and len(history) == 4  # 4 epochs
    best = max(history, key=lambda h: h["validation"]["accuracy"])
    assert report["best"]["validation"]["accuracy"] == pytest.approx(best["validation"]["accuracy"], abs=1e-6)
    assert report["training"]["total_steps"] == history[-1]["step"]

    # The served model directory, with the label map and the input contract.
    from textclf.contract.model_dir import read_manifest

    manifest = read_manifest(sm.model_dir, verify=True)
    assert manifest.labels == sorted(KEYWORDS)
    assert (manifest.max_seq_length, manifest.problem_type, manifest.text_pair) == (32, "single_label", False)
    hf_config = json.loads((sm.model_dir / "hf" / "config.json").read_text())
    assert hf_config["id2label"] == {str(i): label for i, label in enumerate(sorted(KEYWORDS))}

    # Checkpoints: the newest keep_checkpoints (default 2) complete ones in this run's own folder, no
    # temporary leftovers.
    kept = sorted(p.name for p in run_folder(sm.checkpoints).iterdir() if p.is_dir())
    assert len(kept) == 2 and all(name.startswith("step-") for name in kept)


def pair_rows(count: int, seed: int) -> list[dict]:
    """Text pairs labelled with every class whose keyword appears in either text (multi-label)."""
    rng = random.Random(seed)
    filler = "the a of and to is on it".split()
    classes = sorted(KEYWORDS)
    rows = []
    for _ in range(count):
        present = rng.sample(classes, k=rng.choice([1, 1, 2]))
        halves: list[list[str]] = [rng.choices(filler, k=3), rng.choices(filler, k=3)]
        for label in present:
            side = halves[rng.randrange(2)]
            side.insert(rng.randrange(len(side) + 1), rng.choice(KEYWORDS[label]))
        rows.append({"question": " ".join(halves[0]), "answer": " ".join(halves[1]), "tags": present})
    return rows


def test_multi_label_text_pairs_from_jsonl_with_a_split(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    sm = new_tree(tmp_path / "opt_ml")
    write_jsonl(sm.channel("train") / "part-1.jsonl", pair_rows(200, seed=11))
    write_jsonl(sm.channel("train") / "part-2.jsonl", pair_rows(200, seed=12))
    (sm.channel("pretrained") / "model").mkdir()
    for f in tiny_encoder_dir.iterdir():  # one folder down, as an unpacked archive often is
        (sm.channel("pretrained") / "model" / f.name).write_bytes(f.read_bytes())
    sm.hyperparameters({
        **FAST_HYPERPARAMETERS, "epochs": "8", "batch_size": "8", "gradient_accumulation_steps": "2",
        "problem_type": "multi_label", "text_column": "question", "text_pair_column": "answer",
        "label_column": "tags", "validation_split": "0.2", "eval_metric": "micro_f1", "eval_steps": "30",
    })  # fmt: skip
    result = sm.run()
    assert result.returncode == 0, result.stdout + result.stderr
    report = assert_outputs(sm)
    assert report["training"]["validation_origin"].startswith("stratified split of train (20%")
    assert report["training"]["validation_examples"] == 80
    assert metric_lines(result.stdout)[-1][0] == "validation_micro_f1"
    # Always predicting every label scores a micro-F1 of about 0.6 here; far above that means learned.
    assert latest_values(result.stdout)["validation_micro_f1"] >= 0.85
    assert report["final"]["validation"]["micro_f1"] >= 0.85
    # evaluations every 30 steps plus each epoch end: more evaluations than epochs
    assert len(report["history"]) > 8

    from textclf.contract.model_dir import read_manifest

    manifest = read_manifest(sm.model_dir, verify=True)
    assert (manifest.problem_type, manifest.text_pair, manifest.labels) == ("multi_label", True, sorted(KEYWORDS))
