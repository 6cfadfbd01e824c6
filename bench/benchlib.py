"""Shared pieces of the benchmarks: machine facts, result files, data, model preparation, statistics.

Every benchmark writes ``bench/results/<name>.json`` (all numbers, the exact command, the machine,
the date, library versions, the load average at start and end) and ``bench/results/<name>.md`` (the
same as a markdown table), and prints the table. The machine these run on is shared and noisy:
compare two things in one run, quote medians, report ratios.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import importlib.metadata
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / ".work"  # gitignored: models, SM_ROOT trees, logs
DATA_DIR = Path(os.environ.get("TEXTCLF_DATA", REPO.parent / "shared" / "data"))
HEAVY_LOCK = "/tmp/textclf-heavy.lock"  # run_all.sh wraps heavy jobs in flock on it
VERSIONED = (
    "textclf",
    "torch",
    "transformers",
    "onnxruntime",
    "onnx",
    "tokenizers",
    "numpy",
    "flask",
    "gunicorn",
)
csv.field_size_limit(1 << 24)


# -- the machine and the run -----------------------------------------------------------------------
def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def cpu_features() -> list[str]:
    """The SIMD features that decide the INT8 and FP32 kernels (what /proc/cpuinfo says, not the brochure)."""
    try:
        flags = next(
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return []
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx")
    return [f for f in flags if f in wanted or f.startswith("amx")]


def machine() -> dict[str, Any]:
    cpu = _lscpu()
    mem_kb = 0
    with contextlib.suppress(OSError, StopIteration, ValueError):
        mem_kb = int(
            next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1]
        )
    return {
        "cpu_model": cpu.get("Model name", platform.processor()),
        "cpu_family_model": f"{cpu.get('CPU family', '?')}/{cpu.get('Model', '?')}",
        "cpus": os.cpu_count(),
        "cores_per_socket": cpu.get("Core(s) per socket"),
        "threads_per_core": cpu.get("Thread(s) per core"),
        "hypervisor": cpu.get("Hypervisor vendor", ""),
        "simd": cpu_features(),
        "mem_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    out = {}
    for name in (*VERSIONED, *extra):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def git_commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "bench", "src"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def command_line() -> str:
    """The command that reproduces this run, from the repository root."""
    argv = [sys.argv[0], *sys.argv[1:]]
    with contextlib.suppress(ValueError):
        argv[0] = str(Path(argv[0]).resolve().relative_to(REPO))
    return ".venv/bin/python " + shlex.join(argv)


class Run:
    """What every result file records about the run around its numbers."""

    def __init__(self, name: str, extra_versions: Iterable[str] = ()) -> None:
        self.name = name
        self.started = datetime.now(UTC)
        self.t0 = time.monotonic()
        self.meta: dict[str, Any] = {
            "benchmark": name,
            "command": command_line(),
            "date": self.started.isoformat(timespec="seconds"),
            "git": git_commit(),
            "machine": machine(),
            "versions": versions(extra_versions),
            "loadavg_start": loadavg(),
        }

    def finish(
        self, results: dict[str, Any], table: str, notes: Sequence[str] = (), out_dir: Path | None = None
    ) -> Path:
        """Write ``<name>.json`` and ``<name>.md`` and print the table; returns the JSON path."""
        out_dir = out_dir or RESULTS_DIR
        meta = self.meta | {"loadavg_end": loadavg(), "wall_s": round(time.monotonic() - self.t0, 1)}
        write_result(out_dir / f"{self.name}.json", meta | results, table, notes)
        print(table)
        for note in notes:
            print("note:", note)
        print(f"wrote {out_dir / self.name}.json and .md")
        return out_dir / f"{self.name}.json"


def write_result(path: Path, data: dict[str, Any], table: str, notes: Sequence[str] = ()) -> None:
    """``path`` (``<name>.json``: ``data``, run facts included) and the ``.md`` beside it: a heading, the
    run facts, ``table`` and ``notes``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md = [f"# {data['benchmark']}", "", header_md(data), "", table.rstrip(), ""]
    if notes:
        md += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    path.with_suffix(".md").write_text("\n".join(md))


def header_md(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    v = ", ".join(f"{k} {val}" for k, val in meta["versions"].items())
    return "\n".join(
        [
            f"- command: `{meta['command']}`",
            f"- date: {meta['date']} (git {meta.get('git', '')}), wall {meta.get('wall_s', '?')} s",
            f"- machine: {m['cpu_model']} (family/model {m['cpu_family_model']}), {m['cpus']} CPUs, "
            f"{m['mem_gib']} GiB, SIMD: {' '.join(m['simd']) or '?'}",
            f"- load average (1/5/15 min) at start {meta['loadavg_start']}, at end {meta.get('loadavg_end')}",
            f"- versions: {v}",
        ]
    )


def md_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        a = abs(value)
        if a >= 100:
            return f"{value:.0f}"
        if a >= 10:
            return f"{value:.1f}"
        if a >= 0.01:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


# -- statistics ------------------------------------------------------------------------------------
def percentile(samples: Sequence[float], q: int) -> float:
    """The ``q``-th percentile (1..99), interpolated between the nearest two samples like numpy's
    default (``statistics.quantiles``' inclusive method); NaN for no samples."""
    if len(samples) < 2:
        return float(samples[0]) if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def summarize_ms(samples_s: Sequence[float]) -> dict[str, float]:
    ms = [x * 1000 for x in samples_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


def timed_loop(
    fn: Callable[[int], Any], *, max_iters: int, max_s: float, min_iters: int = 3, warmup: int = 1
) -> list[float]:
    """Call ``fn(i)`` at most ``max_iters`` times and for at most ``max_s`` seconds (but at least
    ``min_iters`` times); returns the wall time of each call in seconds."""
    for i in range(warmup):
        fn(i)
    times: list[float] = []
    deadline = time.perf_counter() + max_s
    for i in range(max_iters):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
        if i + 1 >= min_iters and time.perf_counter() > deadline:
            break
    return times


# -- one-node ONNX graphs -------------------------------------------------------------------------
def save_graph(
    path: Path, name: str, nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any]
) -> Path:
    """Write a small ONNX graph (opset 17, IR 8: what this ONNX Runtime loads) to ``path``; returns it."""
    import onnx
    from onnx import helper

    model = helper.make_model(
        helper.make_graph(nodes, name, inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# -- FLOPs -----------------------------------------------------------------------------------------
# INT8 (VNNI, QInt8) MatMul peak per core of this machine kind when idle (shared/reference/performance.md);
# peak.py measures it again in every run, but on a busy shared machine that measurement is slowed too.
REF_INT8_GOPS = 370.0


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    ffn: int

    def flops(self, tokens: int) -> float:
        """Multiply-adds x 2 of one sequence of ``tokens`` (performance.md): linear layers + attention."""
        L, H, F, S = self.layers, self.hidden, self.ffn, tokens  # noqa: N806
        return 2 * L * (4 * H * H + 2 * H * F) * S + 4 * L * S * S * H


def shape_of(config: dict[str, Any]) -> Shape:
    """From a Hugging Face config.json (BERT or DistilBERT keys)."""
    if "n_layers" in config:  # DistilBERT
        return Shape(config["n_layers"], config["dim"], config["hidden_dim"])
    return Shape(config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"])


# -- data ------------------------------------------------------------------------------------------
def require_data(*parts: str) -> Path:
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        raise SystemExit(f"benchmark data {path} not found (set TEXTCLF_DATA to the shared data folder)")
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    delimiter = "\t" if ".tsv" in path.name else ","
    with opener(path, "rt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        return list(csv.DictReader(fh, delimiter=delimiter, quoting=quoting))


# a few sentences, for smoke tests without the shared data
BUILTIN = [
    "A gripping, funny and beautifully acted film.",
    "Dull.",
    "I wanted to like it, but the plot never comes together and the second half drags on and on.",
    "The soundtrack is great; the dialogue is not.",
    "One of the most tedious two hours I have spent in a cinema this year, despite a strong cast.",
    "Wonderful!",
    "It is neither as clever as it thinks nor as bad as the reviews say.",
    "The director's best work in a decade, with a final act that stays with you long after.",
]


def sst2_dev() -> list[str]:
    return [r["sentence"] for r in read_rows(require_data("sst2", "dev.tsv"))]


def imdb_test_subset() -> list[str]:
    return [r["text"] for r in read_rows(require_data("imdb", "test_subset_1000.csv"))]


def sample(texts: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` texts drawn without replacement (cycled when ``n`` exceeds the set), seeded."""
    rng = random.Random(seed)
    pool = list(texts)
    rng.shuffle(pool)
    return [pool[i % len(pool)] for i in range(n)]


# -- models ----------------------------------------------------------------------------------------
MINILM_DIR = WORK_DIR / "minilm"  # the pretrained encoder (scripts/fetch-minilm.sh)


def fetch_minilm(dest: Path = MINILM_DIR) -> Path:
    if not (dest / "model.safetensors").is_file():
        subprocess.run(["bash", str(REPO / "scripts" / "fetch-minilm.sh"), str(dest)], check=True)
    return dest


def hf_classifier(name: str, work: Path = WORK_DIR, num_labels: int = 2, seed: int = 0) -> Path:
    """A Hugging Face sequence-classification directory for ``name``:

    - ``minilm``: the real all-MiniLM-L6-v2 encoder with a fresh (random) 2-label head;
    - ``distilbert`` / ``bert-base``: the standard shapes with random weights (vocab 30522), with
      MiniLM's uncased WordPiece tokenizer (the same bert-base-uncased vocabulary).

    Random weights time exactly like trained ones. Cached under ``work``.
    """
    out = work / "models" / f"{name}-hf"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    src = fetch_minilm()
    labels = {"id2label": {i: f"LABEL_{i}" for i in range(num_labels)}}
    torch.manual_seed(seed)
    if name == "minilm":
        model = BertForSequenceClassification.from_pretrained(str(src), num_labels=num_labels)
    elif name == "distilbert":
        model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=30522, **labels))
    elif name == "bert-base":
        model = BertForSequenceClassification(BertConfig(vocab_size=30522, **labels))
    else:
        raise SystemExit(f"unknown model {name!r}: minilm, distilbert, bert-base")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    return out


def export_dir(hf_dir: Path, precision: str, work: Path = WORK_DIR, max_seq_length: int = 512) -> Path:
    """The product's model directory for ``hf_dir`` (``textclf export``), cached by name+precision+length."""
    from textclf.export.options import ExportOptions
    from textclf.export.pipeline import export_model_dir

    out = work / "models" / f"{hf_dir.name.removesuffix('-hf')}-{precision}-{max_seq_length}"
    if (out / "manifest.json").is_file() and (out / "model.onnx").is_file():
        return out
    # keep_full_precision=False: no copy of the HF weights in hf/, not needed to time the model
    options = ExportOptions(precision=precision, max_seq_length=max_seq_length, keep_full_precision=False)
    export_model_dir(hf_dir, out, options)
    return out


def tiny_bert(out: Path, words: Iterable[str], num_labels: int = 3, seed: int = 3) -> Path:
    """A tiny random BERT classifier (2 layers, hidden 32, 128 positions) whose uncased WordPiece
    vocabulary is ``words``, cached in ``out``. Needs no download; a server running it spends its
    time around the model, not in it (bench/soak.py)."""
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    tokens = dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    labels = {i: f"LABEL_{i}" for i in range(num_labels)}
    shape = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    config = BertConfig(vocab_size=len(tokens), max_position_embeddings=128, id2label=labels, **shape)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    BertForSequenceClassification(config).save_pretrained(str(out))
    return out


def file_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 1)


# -- processes -------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc, no psutil needed)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        for c in children(p):
            if c not in seen:
                seen.append(c)
                todo.append(c)
    return seen


def cpu_ns(pids: list[int]) -> int:
    """Nanoseconds on CPU of every thread of ``pids`` (``schedstat``: exact, unlike clock ticks)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
