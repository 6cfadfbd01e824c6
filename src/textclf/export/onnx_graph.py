"""A PyTorch Hugging Face sequence classifier -> an FP32 ONNX graph with dynamic batch and sequence axes.

The TorchScript exporter (``dynamo=False``) is used: it needs no ``onnxscript``, traces BERT-family
models in well under a second, and gives the graph ONNX Runtime's fusions and quantizer know best.
The model is loaded with eager attention (``attn_implementation="eager"``) for the same reason; the
tracer's warnings about Python booleans come from mask helpers whose outcome does not depend on the
values traced (checked: padded and unpadded traces give the same graph behaviour), and a parity
check against PyTorch, on the traced batch and on one of another size and length, guards that after
every export.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from textclf.model.predictor import create_session

OPSET = 17  # LayerNormalization is a single op from 17 on; well inside what onnxruntime 1.31 runs
CANDIDATE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"


def model_input_names(model: torch.nn.Module) -> list[str]:
    """The encoder inputs the model really reads: those its ``forward`` takes (DistilBERT, MPNet and
    ModernBERT take no token_type_ids), less token_type_ids where the config has fewer than two
    segment embeddings (RoBERTa and XLM-RoBERTa have one, DeBERTa v1 and v3 none: their forward takes
    the argument and ignores it, and the traced graph would have no such input)."""
    params = inspect.signature(model.forward).parameters
    names = [name for name in CANDIDATE_INPUTS if name in params]
    if "input_ids" not in names:
        raise ValueError(f"{type(model).__name__}.forward takes no input_ids")
    segments = getattr(getattr(model, "config", None), "type_vocab_size", None)
    if isinstance(segments, int) and segments < 2 and "token_type_ids" in names:
        names.remove("token_type_ids")
    return names


class _Logits(torch.nn.Module):
    """Positional tensors in, logits out: the shape the TorchScript exporter traces."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors, strict=True)), return_dict=True).logits


def torch_logits(model: torch.nn.Module, arrays: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    with torch.inference_mode():
        return model(**{n: torch.from_numpy(arrays[n]) for n in names}, return_dict=True).logits.float().numpy()


def export_onnx(
    model: torch.nn.Module,
    path: Path,
    sample: dict[str, np.ndarray],
    names: list[str],
    *,
    also: Sequence[dict[str, np.ndarray]] = (),
    opset: int = OPSET,
    tolerance: float = 1e-3,
) -> list[str]:
    """Trace ``model`` on ``sample`` (a padded batch of at least two rows) into ``path``, check that
    ONNX Runtime reproduces PyTorch's logits on it and on the batches ``also`` (other sizes and
    lengths), and return the graph's inputs: ``names``, less any the model turned out not to read
    (the tracer drops an input nothing uses)."""
    wrapper = _Logits(model, names).eval()  # export restores the wrapper's mode onto the model: eval, not train
    args = tuple(torch.from_numpy(sample[n]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {OUTPUT_NAME: {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes; parity is checked below
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return check_parity(path, model, [sample, *also], names, tolerance)


def check_parity(
    path: Path, model: torch.nn.Module, batches: Sequence[dict[str, np.ndarray]], names: list[str], tol: float
) -> list[str]:
    """Compare ONNX Runtime's logits with PyTorch's on each batch; returns the graph's input names."""
    session = create_session(path, threads=max(1, torch.get_num_threads()))
    graph_inputs = [i.name for i in session.get_inputs()]
    if "input_ids" not in graph_inputs or not set(graph_inputs) <= set(names):
        raise RuntimeError(f"ONNX export of {type(model).__name__} has inputs {graph_inputs}, expected {names}")
    for batch in batches:
        got = session.run([OUTPUT_NAME], {n: batch[n] for n in graph_inputs})[0]
        want = torch_logits(model, batch, names)
        diff = float(np.abs(got - want).max())
        if not diff <= tol:  # also catches NaN
            shape = "x".join(map(str, batch["input_ids"].shape))
            raise RuntimeError(
                f"ONNX export of {type(model).__name__} is wrong: logits differ from PyTorch by {diff:.3g} "
                f"on a {shape} batch"
            )
    return [n for n in names if n in graph_inputs]
