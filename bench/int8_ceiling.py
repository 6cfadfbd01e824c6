"""How fast INT8 can be against PyTorch FP32 on this CPU: the model's own matrix products, one by one
(issue 17, part 3: INT8 / PyTorch FP32 >= 5x at 1 thread).

A BERT encoder spends most of its arithmetic in six linear layers per block (Q, K, V, the attention
output, the feed-forward up and down projections). Each is timed alone, at the model's shapes and at
each input length, by three engines taking turns call by call at one thread:

- ``torch``: ``torch.nn.functional.linear`` in FP32 (what ``nn.Linear`` runs in the baseline model);
- ``ort-fp32``: a one-node ONNX ``MatMul`` + ``Add`` in ONNX Runtime, FP32;
- ``int8``: the same graph quantized by the product's exporter (``quantize_int8``, dynamic INT8 with
  the export's default per-channel weights), in the product's session (``create_session``): the
  activations are quantized at every call, as in the served model.

Beside them, the whole models run on the same token ids: the Hugging Face model in PyTorch FP32 and
the product's INT8 export (``session.run``, no tokenizer on either side). An INT8 model can never be
faster than its INT8 linear layers alone, so ``PyTorch model / INT8 linears`` is a ceiling on the
model-level ratio that no graph fusion or session option can pass on this CPU and these kernels.
The ``peak`` rows repeat the products at a large shape (M 512, like ``bench/peak.py``): the ratio
the hardware gives when nothing but arithmetic counts.

    .venv/bin/python bench/int8_ceiling.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib as bl
import numpy as np
import server_load as sl

ENGINES = ("torch", "ort-fp32", "int8")
PEAK_M = 512


def linear_shapes(config: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    """(name, K, N, count per encoder block) of the block's linear layers, from a HF config."""
    shape = bl.shape_of(config)
    h, f = shape.hidden, shape.ffn
    return [("q, k, v, attention output", h, h, 4), ("feed-forward up", h, f, 1), ("feed-forward down", f, h, 1)]


def _linear_graphs(tmp: Path, k: int, n: int, rng: np.random.Generator) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """An FP32 ``MatMul`` + ``Add`` graph (K x N weights, any number of rows) and its product INT8 version."""
    from onnx import TensorProto, helper, numpy_helper

    from textclf.export.options import ExportOptions
    from textclf.export.quantization import quantize_int8

    w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(n) * 0.01).astype(np.float32)
    fp32 = bl.save_graph(
        tmp / f"linear_{k}x{n}.onnx",
        f"linear_{k}x{n}",
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "S", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "S", n])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    int8 = tmp / f"linear_{k}x{n}.int8.onnx"
    quantize_int8(fp32, int8, per_channel=ExportOptions().per_channel)
    return fp32, int8, w, b


def _call_graph(tmp: Path, k: int) -> Path:
    """A one-node ``Shape`` of the same input (three integers out): what a ``session.run`` call costs
    besides its kernels. A layer inside the model does not pay it, so it comes off each ORT layer."""
    from onnx import TensorProto, helper

    return bl.save_graph(
        tmp / f"call_{k}.onnx",
        "call",
        [helper.make_node("Shape", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "S", k])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [3])],
        [],
    )


def _per(a: float, b: float) -> float | None:
    """``a / b``, or None when ``b`` is not above zero: an ORT layer that takes no longer than an empty
    ``session.run`` call (a tiny shape) has no time of its own left to divide by."""
    return a / b if b > 0 else None


def _without_call(med: dict[str, float]) -> tuple[dict[str, float], float]:
    """The medians with the ``ort call`` entry taken out and its cost taken off every ORT layer (never
    below zero; whole models keep theirs: they pay one call too); and that cost."""
    call = med.pop("ort call")

    def own(key: str, t: float) -> float:
        return max(0.0, t - call) if key.startswith(("ort-fp32 ", "int8 ")) and not key.endswith("model") else t

    return {key: own(key, t) for key, t in med.items()}, call


def _layer_row(tokens: int, layer: str, k: int, n: int, per_block: Any, med: dict[str, float]) -> dict[str, Any]:
    """One linear layer's row from the medians (seconds) of ``f"{engine} {k}x{n}"``."""
    row: dict[str, Any] = {"tokens": tokens, "layer": layer, "k_x_n": f"{k}x{n}", "per_block": per_block}
    for engine in ENGINES:
        row[f"{engine}_us"] = med[f"{engine} {k}x{n}"] * 1e6
    torch_s, int8_s = med[f"torch {k}x{n}"], med[f"int8 {k}x{n}"]
    row["torch_gmacs"] = _per(tokens * k * n / 1e9, torch_s)
    row["int8_gmacs"] = _per(tokens * k * n / 1e9, int8_s)
    row["int8_x_torch"] = _per(torch_s, int8_s)
    return row


def take_turns(calls: dict[str, Callable[[], Any]], max_s: float, max_rounds: int) -> dict[str, list[float]]:
    """Seconds of every call of each entry; the calls take turns, who goes first rotating by round."""
    for fn in calls.values():  # warm-up: lazy set-up and first-shape planning out of the timings
        fn()
        fn()
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    deadline = time.perf_counter() + max_s
    for r in range(max_rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t)
        if r >= 2 and time.perf_counter() > deadline:
            break
    return times


def measure(
    hf_dir: Path, lengths: list[int], max_s: float, max_rounds: int, work: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-shape rows, per-length rows) at one thread."""
    import onnxruntime as ort
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification

    from textclf.model.predictor import create_session

    torch.set_num_threads(1)
    config = json.loads((hf_dir / "config.json").read_text())
    shapes = linear_shapes(config)
    layers = bl.shape_of(config).layers
    model_dir = bl.export_dir(hf_dir, "int8", work, max_seq_length=max(lengths))
    int8_model = create_session(model_dir / "model.onnx", 1)
    input_names = [i.name for i in int8_model.get_inputs()]
    torch_model = AutoModelForSequenceClassification.from_pretrained(str(hf_dir)).eval()
    rng = np.random.default_rng(0)
    shape_rows: list[dict[str, Any]] = []
    length_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        graphs = {(k, n): _linear_graphs(Path(tmp), k, n, rng) for _, k, n, _ in shapes}
        sessions = {
            kn: {"ort-fp32": create_session(fp32, 1), "int8": create_session(int8, 1)}
            for kn, (fp32, int8, _, _) in graphs.items()
        }
        call_session = create_session(_call_graph(Path(tmp), shapes[0][1]), 1)
        weights = {kn: (torch.from_numpy(w.T.copy()), torch.from_numpy(b)) for kn, (_, _, w, b) in graphs.items()}

        def linear_calls(m: int) -> dict[str, Callable[[], Any]]:
            calls: dict[str, Callable[[], Any]] = {}
            for (k, n), sess in sessions.items():
                x = rng.standard_normal((1, m, k)).astype(np.float32)
                xt, (w, b) = torch.from_numpy(x), weights[(k, n)]
                calls[f"torch {k}x{n}"] = lambda xt=xt, w=w, b=b: torch.nn.functional.linear(xt, w, b)
                for engine in ("ort-fp32", "int8"):
                    s: ort.InferenceSession = sess[engine]
                    calls[f"{engine} {k}x{n}"] = lambda s=s, x=x: s.run(None, {"x": x})
            x = rng.standard_normal((1, m, shapes[0][1])).astype(np.float32)
            calls["ort call"] = lambda x=x: call_session.run(None, {"x": x})
            return calls

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.no_padding()  # an exported tokenizer.json may pad to a fixed length
        first, last = tokenizer.encode("").ids  # [CLS], [SEP]
        for m in lengths:
            ids = rng.integers(config["vocab_size"] // 2, config["vocab_size"], (1, m), dtype=np.int64)
            ids[0, 0], ids[0, -1] = first, last
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            ort_feed = {k: feeds[k] for k in input_names}
            torch_feed = {k: torch.from_numpy(v) for k, v in feeds.items() if k in input_names}
            calls = linear_calls(m)
            calls["torch model"] = lambda f=torch_feed: torch_model(**f)
            calls["int8 model"] = lambda f=ort_feed: int8_model.run(None, f)
            med, call = _without_call(
                {k: statistics.median(v) for k, v in take_turns(calls, max_s, max_rounds).items()}
            )
            per_engine = {e: sum(layers * c * med[f"{e} {k}x{n}"] for _, k, n, c in shapes) for e in ENGINES}
            shape_rows += [_layer_row(m, name, k, n, count, med) for name, k, n, count in shapes]
            t_model, i_model = med["torch model"], med["int8 model"]
            length_rows.append(
                {
                    "tokens": m,
                    "torch_model_ms": t_model * 1e3,
                    "int8_model_ms": i_model * 1e3,
                    "ort_call_us": call * 1e6,
                    "model_x": t_model / i_model,
                    "torch_linears_ms": per_engine["torch"] * 1e3,
                    "ort_fp32_linears_ms": per_engine["ort-fp32"] * 1e3,
                    "int8_linears_ms": per_engine["int8"] * 1e3,
                    "linears_x": _per(per_engine["torch"], per_engine["int8"]),
                    "int8_rest_ms": (i_model - per_engine["int8"]) * 1e3,
                    "ceiling_x": _per(t_model, per_engine["int8"]),
                }
            )
            print(json.dumps(length_rows[-1]), flush=True)
        # The hardware's own ratio: the feed-forward product at a large M, where arithmetic is all.
        big = linear_calls(PEAK_M)
        _, k, n, _ = shapes[1]
        chosen = {key: big[key] for key in (*(f"{e} {k}x{n}" for e in ENGINES), "ort call")}
        peak, _ = _without_call({key: statistics.median(v) for key, v in take_turns(chosen, max_s, max_rounds).items()})
        shape_rows.append(_layer_row(PEAK_M, f"peak: feed-forward up at M {PEAK_M}", k, n, "-", peak))
    return shape_rows, length_rows


def tables(shape_rows: list[dict[str, Any]], length_rows: list[dict[str, Any]]) -> str:
    by_length = bl.md_table(
        length_rows,
        ["tokens", "torch_model_ms", "int8_model_ms", "model_x", "ort_call_us", "torch_linears_ms",
         "ort_fp32_linears_ms", "int8_linears_ms", "linears_x", "int8_rest_ms", "ceiling_x"],
        ["tokens", "PyTorch model ms", "INT8 model ms", "INT8 x PyTorch (model)", "ORT call us",
         "PyTorch linears ms", "ORT FP32 linears ms", "INT8 linears ms", "INT8 x PyTorch (linears)",
         "INT8 model - its linears ms", "ceiling: PyTorch model / INT8 linears"],
    )  # fmt: skip
    by_shape = bl.md_table(
        shape_rows,
        ["tokens", "layer", "k_x_n", "per_block", "torch_us", "ort-fp32_us", "int8_us", "torch_gmacs",
         "int8_gmacs", "int8_x_torch"],
        ["tokens", "layer", "K x N", "per block", "PyTorch us", "ORT FP32 us", "INT8 us", "PyTorch GMAC/s",
         "INT8 GMAC/s", "INT8 x PyTorch"],
    )  # fmt: skip
    return f"{by_length}\n\nEach linear layer alone (medians; the layer counts per encoder block):\n\n{by_shape}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf-dir", help="HF classifier (default: the fine-tuned SST-2 MiniLM, else MiniLM)")
    ap.add_argument("--lengths", default="25,128,256", help="tokens per input (25: SST-2's mean)")
    ap.add_argument("--seconds", type=float, default=15.0, help="per length")
    ap.add_argument("--max-rounds", type=int, default=2000)
    ap.add_argument("--work-dir", type=Path, default=bl.WORK_DIR)
    ap.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    ap.add_argument("--name", default="int8-ceiling")
    args = ap.parse_args()
    try:
        lengths = sorted({int(x) for x in args.lengths.split(",")})
    except ValueError:
        ap.error(f"--lengths must be comma-separated integers, got {args.lengths!r}")
    if not lengths or lengths[0] < 2:
        ap.error(f"--lengths must be at least 2 tokens each, got {args.lengths!r}")
    run = bl.Run(args.name)
    hf_dir, hf_what = sl.pick_hf_dir(args.hf_dir, args.work_dir)
    shape_rows, length_rows = measure(hf_dir, lengths, args.seconds, args.max_rounds, args.work_dir)
    notes = [
        f"Model: {hf_dir} ({hf_what}); INT8: the product's export at max_seq_length {max(lengths)}. One thread "
        "(torch.set_num_threads(1), ORT intra-op 1); batch 1; token ids given (no tokenizer on either side).",
        "Linears: the layer's one-node graph (or F.linear) timed alone, less (ORT only) the median cost of a "
        "session.run call that does no arithmetic ('ORT call': a Shape node on the same input), which a layer "
        "inside a model does not pay; a length's linears total is the sum over the model's blocks. The calls "
        "of a length took turns call by call; medians.",
        "An INT8 model is never faster than its INT8 linear layers alone, so 'ceiling' bounds the model-level "
        "INT8 x PyTorch ratio with these kernels on this CPU, whatever else the graph does.",
        f"CPU SIMD features seen by the OS: {' '.join(bl.cpu_features()) or 'unknown'} (INT8 dot products: "
        "avx512_vnni / avx_vnni when present).",
    ]
    run.finish(
        {"hf_dir": str(hf_dir), "lengths": length_rows, "shapes": shape_rows},
        tables(shape_rows, length_rows),
        notes,
        out_dir=args.out_dir,
    )


if __name__ == "__main__":
    main()
