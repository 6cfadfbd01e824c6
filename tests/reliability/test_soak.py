"""A short soak of the real stack: concurrency 32 then 64, mixed valid bodies (one text, a JSON batch,
JSON Lines), every answer checked. Zero errors; the stack's memory (RSS of nginx, the gunicorn
master and workers) grows under 10% from the end of each warm-up to the end of its run; p99 is
printed. The long version is bench/soak.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.reliability import Ledger, ledger_for, mixed_bodies, percentile, process_group, rss_kib, run_load
from support.serving import ServeProcess, make_sm_root

SECONDS = float(os.environ.get("TEXTCLF_SOAK_SECONDS", "15"))
WARMUP_S = 3.0


@pytest.fixture(scope="module")
def ledger(request: pytest.FixtureRequest) -> Ledger:
    return ledger_for(request.config, "soak (tests/reliability/test_soak.py)")


@pytest.fixture(scope="module")
def stack(reliability_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, ledger: Ledger) -> Iterator:
    work = tmp_path_factory.mktemp("soak")
    env = {"TEXTCLF_INTRA_OP_THREADS": "1"}
    with ServeProcess(make_sm_root(reliability_model_dir, work / "opt-ml"), work / "logs", env, workers=2) as serve:
        ledger.note(f"time from start to the first /ping 200: {serve.wait_ready():.2f} s")
        yield serve


def _rss(serve: ServeProcess) -> int:
    return rss_kib(process_group(serve.proc.pid))  # type: ignore[union-attr]


@pytest.mark.parametrize("concurrency", [32, 64])
def test_soak_has_no_errors_and_bounded_memory(stack: ServeProcess, ledger: Ledger, concurrency: int) -> None:
    rss: dict[str, int] = {}
    result = run_load(
        stack.port,
        concurrency,
        SECONDS,
        mixed_bodies(seed=concurrency),
        warmup_s=WARMUP_S,
        on_warm=lambda: rss.update(warm=_rss(stack)),
    )
    rss["end"] = _rss(stack)
    growth = rss["end"] / rss["warm"] - 1
    p50, p99 = percentile(result.latencies_s, 50) * 1000, percentile(result.latencies_s, 99) * 1000
    for outcome, n in result.outcomes.items():
        ledger.request(f"c{concurrency} {outcome}", n)
    for error in result.errors:
        ledger.lose(f"c{concurrency} {error}")
    ledger.note(
        f"concurrency {concurrency}: {result.requests} requests in {result.seconds:.1f} s "
        f"({dict(result.by_kind)}), p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"RSS {rss['warm'] / 1024:.0f} -> {rss['end'] / 1024:.0f} MiB ({growth:+.1%})"
    )
    assert result.failed == 0, result.errors
    assert result.outcomes["ok"] > concurrency
    assert growth < 0.10, rss
    assert stack.proc.poll() is None  # type: ignore[union-attr]
