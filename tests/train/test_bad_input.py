"""Every input a user can get wrong fails with exit code 2 and a failure file naming the problem.

Data and hyperparameter errors are caught before torch is imported, so these runs take about a
second each; only the model-loading cases pay for importing transformers.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from support.training import SageMakerTree, keyword_rows, write_csv, write_jsonl
from textclf import errors
from textclf.contract import opt_ml as environment
from textclf.train import job as train_job


def failure_reason(sm: SageMakerTree, result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == errors.EXIT_USER_ERROR, result.stdout + result.stderr
    assert sm.failure.is_file()
    reason = sm.failure.read_text(encoding="utf-8").splitlines()[0]
    assert not reason.startswith("Traceback")
    assert not sm.model_dir.exists() or not any(sm.model_dir.iterdir())  # nothing half-written
    return reason


def drop_channel(name: str) -> Callable[[SageMakerTree], None]:
    return lambda sm: shutil.rmtree(sm.channel(name))


def empty_file(sm: SageMakerTree) -> None:
    (sm.channel("train") / "zz-empty.csv").write_text("")


def empty_text_at_line_4(sm: SageMakerTree) -> None:
    rows = keyword_rows(20, seed=5)
    rows[2]["text"] = "   "  # header is line 1, so row index 2 is line 4
    write_csv(sm.channel("train") / "train.csv", rows)


def invisible_text_at_line_4(channel: str, text: str) -> Callable[[SageMakerTree], None]:
    """A text with nothing to classify (textclf.model.text_validity, the rule serving applies too)."""

    def mutate(sm: SageMakerTree) -> None:
        rows = keyword_rows(20, seed=5)
        rows[2]["text"] = text
        write_csv(sm.channel(channel) / f"{channel}.csv", rows)

    return mutate


def blank_pair_at_line_3(sm: SageMakerTree) -> None:
    rows = [{**row, "pair": "see above"} for row in keyword_rows(20, seed=8)]
    rows[2]["pair"] = "\u00a0\u3000"  # no-break and ideographic spaces: whitespace
    (sm.channel("train") / "train.csv").unlink()
    write_jsonl(sm.channel("train") / "train.jsonl", rows)
    sm.hyperparameters({"text_pair_column": "pair"})


def unknown_label_in(channel: str) -> Callable[[SageMakerTree], None]:
    def mutate(sm: SageMakerTree) -> None:
        rows = keyword_rows(20, seed=6)
        rows[5]["label"] = "music"  # line 7
        write_csv(sm.channel(channel) / f"{channel}.csv", rows)

    return mutate


def single_class(sm: SageMakerTree) -> None:
    write_csv(sm.channel("train") / "train.csv", keyword_rows(20, seed=7, labels=["tech"]))


def hyperparameter(**values: str) -> Callable[[SageMakerTree], None]:
    def mutate(sm: SageMakerTree) -> None:
        sm.hyperparameters(values)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (drop_channel("train"), r"^channel 'train' not found; channels found: pretrained, test, validation$"),
        (empty_file, r"zz-empty\.csv is empty"),
        (hyperparameter(text_column="sentence"), r"train\.csv: no column 'sentence' \(columns found: text, label\)"),
        (empty_text_at_line_4, r"train\.csv line 4: the text in column 'text' is empty \(only whitespace\)$"),
        (
            invisible_text_at_line_4("train", "\x00\x00\x00"),
            r"train\.csv line 4: the text in column 'text' is empty \(only invisible characters: U\+0000 control\)$",
        ),
        (
            invisible_text_at_line_4("validation", "\u200b\u200d\u2060"),
            r"validation\.csv line 4: the text in column 'text' is empty \(only invisible characters: U\+200B ZERO",
        ),
        (blank_pair_at_line_3, r"train\.jsonl line 3: the text in column 'pair' is empty \(only whitespace\)$"),
        (unknown_label_in("validation"), r"unknown label 'music' in validation at .*validation\.csv line 7"),
        (unknown_label_in("test"), r"unknown label 'music' in test at .*test\.csv line 7"),
        (single_class, r"train holds a single class 'tech'"),
        (hyperparameter(epoch="3"), r"^unknown hyperparameter 'epoch'; valid names: .*epochs"),
        (hyperparameter(learning_rate="fast"), r"^hyperparameter learning_rate: .*\(got 'fast'\)"),
        (hyperparameter(batch_size="0"), r"^hyperparameter batch_size: .*greater than or equal to 1"),
    ],
    ids=[
        "missing-channel",
        "empty-file",
        "missing-column",
        "empty-text",
        "nul-text",
        "zero-width-text-in-validation",
        "blank-text-pair",
        "unknown-label-validation",
        "unknown-label-test",
        "single-class",
        "unknown-hyperparameter",
        "bad-value",
        "out-of-range",
    ],
)
def test_bad_input_fails_clearly(sm: SageMakerTree, mutate: Callable[[SageMakerTree], None], expected: str) -> None:
    mutate(sm)
    assert_match(failure_reason(sm, sm.run()), expected)


def assert_match(reason: str, pattern: str) -> None:
    import re

    assert re.search(pattern, reason), f"{reason!r} does not match {pattern!r}"


def test_unfindable_local_model_says_where_it_looked(sm: SageMakerTree) -> None:
    shutil.rmtree(sm.channel("pretrained"))
    sm.hyperparameters({"model_name_or_path": "/nowhere/my-model"})
    reason = failure_reason(sm, sm.run())
    assert_match(reason, r"cannot load the pretrained model; looked in channel 'pretrained': not provided")
    assert_match(reason, r"local path /nowhere/my-model: does not exist")


def test_unreachable_hub_model_says_where_it_looked(sm: SageMakerTree) -> None:
    shutil.rmtree(sm.channel("pretrained"))
    sm.hyperparameters({"model_name_or_path": "no-such-org/no-such-model"})
    reason = failure_reason(sm, sm.run(HF_HUB_OFFLINE="1"))
    assert_match(
        reason, r"cannot load the pretrained model 'no-such-org/no-such-model'; looked in channel 'pretrained'"
    )
    assert_match(reason, r"local path no-such-org/no-such-model: does not exist; hub id no-such-org/no-such-model: ")


def test_pretrained_channel_without_a_model(sm: SageMakerTree) -> None:
    shutil.rmtree(sm.channel("pretrained"))
    (sm.channel("pretrained") / "readme.txt").write_text("weights to follow")
    reason = failure_reason(sm, sm.run())
    assert_match(
        reason, r"channel 'pretrained' .*: no config\.json and no single \.tar\.gz in it \(found: readme\.txt\)"
    )


def test_unexpected_error_reports_type_and_message_first(tmp_path: Path) -> None:
    p = environment.Paths(tmp_path)
    try:
        raise RuntimeError("something broke\nbadly")
    except RuntimeError as exc:
        code = train_job.fail(exc, p)
    lines = p.failure_file.read_text().splitlines()
    assert code == errors.EXIT_BUG
    assert lines[0] == "RuntimeError: something broke badly"
    assert any(line.startswith("Traceback") for line in lines[1:])


def test_a_stop_a_library_swallowed_is_still_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM before training raises wherever the main thread is; a library catching every exception
    there must not make the job carry on: the next step of the set-up raises it again."""
    from textclf.train import job

    monkeypatch.setattr(job, "_stopped_by", None)
    job.raise_if_stopped()  # nothing asked to stop
    with contextlib.suppress(Exception):  # what such a library does
        job._stop_at_once(signal.SIGTERM, None)
    with pytest.raises(errors.StoppedBeforeTrainingError, match="stopped by SIGTERM before training started"):
        job.raise_if_stopped()
    assert errors.exit_code(errors.StoppedBeforeTrainingError("x")) == errors.EXIT_STOPPED
