"""What ``train`` leaves in ``/opt/ml/output/data`` besides the model: metrics.json and two plots.

Plots use matplotlib's object API on the Agg canvas (no pyplot, no display, no global state).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from textclf.contract.model_dir import atomic_write_text

METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion_matrix.png"
CURVE_FILE = "learning_curve.png"


def write_metrics(output_dir: Path, report: dict[str, Any]) -> Path:
    path = output_dir / METRICS_FILE
    atomic_write_text(path, json.dumps(report, indent=2, sort_keys=False, default=float) + "\n")
    return path


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def plot_confusion_matrix(path: Path, matrix: np.ndarray, labels: list[str], title: str) -> Path:
    """A heat map of true x predicted counts; for multi-label ([L, 2, 2]), one row of TN FP FN TP per label."""
    multi = matrix.ndim == 3
    grid = matrix.reshape(len(labels), 4) if multi else matrix
    columns = ["TN", "FP", "FN", "TP"] if multi else labels
    size = max(4.0, min(0.5 * max(len(labels), len(columns)) + 2.0, 30.0))
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(
        range(len(columns)), labels=columns, rotation=45 if not multi else 0, ha="right" if not multi else "center"
    )
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("outcome" if multi else "predicted")
    ax.set_ylabel("label" if multi else "true")
    ax.set_title(title)
    if grid.size <= 400:  # numbers stay readable up to 20 x 20
        threshold = grid.max() / 2 if grid.size else 0
        for (row, col), value in np.ndenumerate(grid):
            ax.text(
                col, row, str(int(value)), ha="center", va="center", color="white" if value > threshold else "black"
            )
    fig.tight_layout()
    return _save(fig, path)


def plot_learning_curve(path: Path, history: list[dict[str, Any]], eval_metric: str) -> Path:
    """Training and validation loss, and the validation metric that picks the best weights, per step."""
    steps = [h["step"] for h in history]
    fig = Figure(figsize=(10, 4))
    loss_ax, metric_ax = fig.subplots(1, 2)
    train = [(h["step"], h["train_loss"]) for h in history if h.get("train_loss") is not None]
    if train:
        loss_ax.plot(*zip(*train, strict=True), marker="o", label="train loss")
    loss_ax.plot(steps, [h["validation"]["loss"] for h in history], marker="o", label="validation loss")
    loss_ax.set_xlabel("optimizer step")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    values = [h["validation"][eval_metric] for h in history]
    metric_ax.plot(steps, values, marker="o", color="tab:green")
    finite = [v for v in values if not math.isnan(v)]
    if finite:
        best = min(finite) if eval_metric == "loss" else max(finite)
        metric_ax.axhline(best, linestyle="--", color="grey", linewidth=1)
    metric_ax.set_xlabel("optimizer step")
    metric_ax.set_ylabel(f"validation {eval_metric}")
    fig.tight_layout()
    return _save(fig, path)
