"""Render the benchmark results (``bench/results/*.json``) as markdown for bench/README.md.

Prints the tables; ``make readme-tables`` (scripts/readme_tables.py) puts them between the markers
``<!-- bench:start -->`` and ``<!-- bench:end -->`` of bench/README.md, touching nothing outside them.
Links to each result's full table are relative to the folder above the results folder (``bench/``).

Every block names the command that produced it, the date, the machine (CPU model, CPU count) and the
load average at the start and end of the run: the machine is shared, so read ratios within one run.

    .venv/bin/python bench/make_readme_table.py [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import benchlib as bl

ORDER = ("peak", "engine", "server", "profile")  # then anything else, by name


def provenance(r: dict[str, Any], md_link: str) -> str:
    m = r.get("machine", {})
    return (
        f"`{r.get('command', '?')}` — {r.get('date', '?')} (git {r.get('git', '?')}), "
        f"{m.get('cpu_model', '?')} x {m.get('cpus', '?')} CPUs, load average {r.get('loadavg_start')} -> "
        f"{r.get('loadavg_end')}, wall {r.get('wall_s', '?')} s; full table: [{Path(md_link).name}]({md_link})"
    )


def peak_block(r: dict[str, Any]) -> list[str]:
    rows = r.get("rows") or r.get("peak", {}).get("rows", [])
    cols = ["graph", "threads", "shape", "gops_median", "gops_p10"]
    return [bl.md_table(rows, cols, ["graph", "threads", "M x K x N", "GOP/s (median)", "GOP/s (p10 time)"])]


def engine_block(r: dict[str, Any]) -> list[str]:
    cells: dict[tuple, dict[str, Any]] = {}
    for row in r.get("rows", []):
        key = (row["model"], row["threads"], row["input"], row["batch"])
        cell = cells.setdefault(key, {"model": key[0], "threads": key[1], "input": key[2], "batch": key[3]})
        cell["tokens"] = row["mean_tokens"]
        cell[row["runtime"]] = row["texts_per_s"]
        if row["runtime"] == "ort-int8":
            cell |= {
                "int8_p50": row["p50_ms"],
                "int8_p99": row["p99_ms"],
                "x": row.get("x_vs_torch"),
                "pct": row["pct_of_int8_ceiling"],
                # against the idle machine's INT8 peak (performance.md), for runs whose in-run peak was slowed
                "pct_ref": 100 * row["texts_per_s"] * row["gflop_per_text"] / (bl.REF_INT8_GOPS * row["threads"]),
            }
    cols = ["model", "threads", "input", "batch", "tokens", "torch", "ort-fp32", "ort-int8"]
    cols += ["int8_p50", "int8_p99", "x", "pct", "pct_ref"]
    heads = ["model", "thr", "input", "batch", "tokens", "PyTorch FP32 texts/s", "ORT FP32 texts/s"]
    heads += ["ORT INT8 texts/s", "INT8 p50 ms", "INT8 p99 ms", "INT8 / PyTorch", "INT8 % of in-run ceiling"]
    heads += [f"INT8 % of idle ceiling ({bl.REF_INT8_GOPS:.0f} GOP/s/core)"]
    out = [bl.md_table(list(cells.values()), cols, heads)]
    s = r.get("summary", {})
    if "int8_vs_torch_median" in s:
        out.append(
            f"INT8 / PyTorch FP32 texts/s: median {bl.fmt(s['int8_vs_torch_median'])}x "
            f"(min {bl.fmt(s['int8_vs_torch_min'])}x, max {bl.fmt(s['int8_vs_torch_max'])}x) over "
            f"{len(s.get('int8_vs_torch', []))} cells; aim >= 4x."
        )
    return out


def server_block(r: dict[str, Any]) -> list[str]:
    rows = []
    for name in r.get("servers", {}):
        sat = r.get("summary", {}).get("saturation", {}).get(name, {})
        for shape, best in sorted(sat.items()):
            rows.append({"server": name, "shape": shape} | best)
    cols = ["server", "shape", "concurrency", "req_per_s", "texts_per_s", "p50_ms", "p99_ms", "errors"]
    heads = ["server", "request", "best concurrency", "req/s", "texts/s", "p50 ms", "p99 ms", "errors"]
    out = ["Each server at its best concurrency (of " + _levels(r) + "):", "", bl.md_table(rows, cols, heads)]
    per_level = [x for x in r.get("summary", {}).get("per_level", []) if x["server"] == "textclf"]
    if per_level:
        cols = ["shape", "concurrency", "req_per_s", "x bare", "x seed", "x hf", "seed p99 / textclf p99"]
        cols += ["hf p99 / textclf p99"]
        heads = ["request", "concurrency", "textclf req/s", "/ bare", "/ seed", "/ HF toolkit", "seed p99 / ours"]
        heads += ["HF p99 / ours"]
        out += ["", "textclf against the others level by level (they took turns at each level):", ""]
        out += [bl.md_table(per_level, cols, heads)]
    aims = r.get("summary", {}).get("aims")
    if aims:
        out += ["", bl.md_table(aims, ["aim", "value", "target", "met"], ["aim", "measured", "aim", "met"])]
    for name, why in r.get("failures", {}).items():
        out += ["", f"{name} could not run: {why}"]
    return out


def _levels(r: dict[str, Any]) -> str:
    servers = r.get("servers", {})
    levels = sorted({run["concurrency"] for n, d in servers.items() if "bare" not in n for run in d.get("runs", [])})
    return ", ".join(map(str, levels)) or "?"


def first_table(md_path: Path) -> list[str]:
    """The first markdown table of a result's ``.md`` (``benchlib.Run.finish`` writes the same table)."""
    lines = md_path.read_text().splitlines() if md_path.is_file() else []
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return [f"(no table in {md_path.name})"]
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def profile_block(r: dict[str, Any]) -> list[str]:
    cols = ["model", "input", "mean_tokens", "total ms", "tokenize %", "model (session.run) %", "rest %"]
    heads = ["model", "input", "tokens", "ms per request", "tokenize %", "ORT session.run %", "rest %"]
    out = ["Stages of a request in the predictor (1 thread):", "", bl.md_table(r.get("stages", []), cols, heads)]
    ops = r.get("ort_ops", [])
    if ops:
        groups = list(dict.fromkeys(g for row in ops for g in row.get("groups_pct", {})))
        rows = [{"model": o["model"], "input": o["input"]} | o.get("groups_pct", {}) for o in ops]
        out += ["", "ONNX Runtime's profile, % of kernel time:", "", bl.md_table(rows, ["model", "input", *groups])]
    spies = r.get("py_spy", {})
    if spies:
        cats = sorted({c for d in spies.values() for c in d.get("share_pct", {})})
        rows = [{"server": n} | d.get("share_pct", {}) for n, d in spies.items()]
        out += ["", "py-spy, % of busy worker samples under load:", "", bl.md_table(rows, ["server", *cats])]
    return out


BLOCKS = {"peak": peak_block, "engine": engine_block, "server": server_block, "profile": profile_block}


def kind_of(r: dict[str, Any]) -> str:
    """Which script wrote a result, from its shape (names are free: ``--name`` may be anything)."""
    if "servers" in r:
        return "server"
    if "peak" in r and any("runtime" in row for row in r.get("rows", [])):
        return "engine"
    if "peaks_gops" in r:
        return "peak"
    if "stages" in r and "breakdown" not in r:  # request_breakdown.py has stages too: it gets its own table
        return "profile"
    return str(r.get("benchmark", "other"))


def render(results_dir: Path) -> str:
    found = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        if not isinstance(r, dict) or "command" not in r or "machine" not in r:
            continue  # e.g. image-sizes.json, which the top README shows in its own section
        found.append((kind_of(r), path, r))
    rank = {k: i for i, k in enumerate(ORDER)}
    found.sort(key=lambda x: (rank.get(x[0], len(ORDER)), x[1].name))
    out = [
        "<!-- generated by `make readme-tables` (bench/make_readme_table.py) from bench/results/*.json: "
        "do not edit by hand -->",
        "",
    ]
    if not found:
        return "\n".join([*out, f"No results in {results_dir} yet: run `make bench`.", ""])
    for kind, path, r in found:
        md_link = f"{results_dir.name}/{path.with_suffix('.md').name}"
        out += [f"### {r.get('benchmark', path.stem)}", "", provenance(r, md_link), ""]
        block = BLOCKS[kind](r) if kind in BLOCKS else first_table(path.with_suffix(".md"))
        out += [*block, ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=bl.RESULTS_DIR)
    print(render(ap.parse_args().results), end="")


if __name__ == "__main__":
    main()
