"""The fine-tuned Hugging Face directory the exporter reads: config, classifier, tokenizer, limits.

Refuses what cannot be exported with a reason: not a directory, no config.json, not a
sequence classifier, a regression head, weights that are not fine-tuned (a missing head), a slow
tokenizer that cannot be saved as ``tokenizer.json``.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from textclf.contract.model_dir import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, ProblemType
from textclf.errors import ModelLoadError
from textclf.train import families

MULTI_LABEL = "multi_label_classification"  # config.problem_type of a multi-label HF model


def read_config(hf_dir: Path) -> dict[str, Any]:
    if not hf_dir.exists():
        raise ModelLoadError(f"{hf_dir} does not exist: expected a fine-tuned Hugging Face model directory")
    if not hf_dir.is_dir():
        raise ModelLoadError(f"{hf_dir} is not a directory: expected a fine-tuned Hugging Face model directory")
    config_file = hf_dir / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{hf_dir} is not a Hugging Face model directory: it has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config_file} is not readable JSON: {exc}") from exc
    architectures = config.get("architectures") or []
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelLoadError(
            f"{hf_dir} holds a {', '.join(architectures)}, not a sequence-classification model; "
            "fine-tune it first (textclf train)"
        )
    if config.get("model_type"):  # a family textclf refuses (a decoder, an encoder-decoder...) stops here
        families.check(config, str(hf_dir))
    single_output = len(config.get("id2label") or {}) == 1 and config.get("problem_type") != MULTI_LABEL
    if config.get("problem_type") == "regression" or single_output:
        raise ModelLoadError(f"{hf_dir} is a regression model; textclf exports classifiers only")
    return config


def model_max_length(hf_dir: str | Path, cap: int = 512) -> int:
    """The longest input the model and its tokenizer accept (at most ``cap``), from their JSON configs."""
    hf_dir = Path(hf_dir)
    config = read_config(hf_dir)
    limits = [cap, families.max_tokens(config) or cap]  # RoBERTa-style positions start after the pad id
    with contextlib.suppress(OSError, ValueError, TypeError):
        tok = json.loads((hf_dir / TOKENIZER_CONFIG_FILE).read_text(encoding="utf-8"))
        if 0 < int(tok.get("model_max_length") or 0) < 1_000_000:
            limits.append(int(tok["model_max_length"]))
    return min(limits)


def load_classifier(hf_dir: Path) -> tuple[Any, Any]:
    """The PyTorch model (FP32, eager attention, eval mode) and its tokenizer, or a clear refusal."""
    read_config(hf_dir)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the "newly initialized weights" warning is turned into an error below
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            hf_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
        )
        tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    except pickle.UnpicklingError:
        # torch.load(weights_only=True) refused a pickle holding more than tensors: its payload never ran.
        raise ModelLoadError(
            f"refusing {hf_dir}: its PyTorch weights file holds objects other than tensors; "
            "provide model.safetensors instead"
        ) from None
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelLoadError(f"cannot load {hf_dir} as a sequence classifier with its tokenizer: {exc}") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
    if missing := info.get("missing_keys"):
        shown = ", ".join(sorted(missing)[:4]) + (", ..." if len(missing) > 4 else "")
        raise ModelLoadError(
            f"{hf_dir} is not a fine-tuned classifier: its weights lack {shown}; fine-tune it first (textclf train)"
        )
    return model.eval(), tokenizer


def labels_and_problem_type(config: Any) -> tuple[list[str], ProblemType]:
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    if sorted(id2label) != list(range(config.num_labels)):
        raise ModelLoadError(f"config id2label {config.id2label} does not name labels 0..{config.num_labels - 1}")
    labels = [id2label[i] for i in range(config.num_labels)]
    if len(set(labels)) != len(labels):
        raise ModelLoadError(f"config id2label has duplicate label names: {labels}")
    return labels, "multi_label" if config.problem_type == MULTI_LABEL else "single_label"


def save_tokenizer(tokenizer: Any, staging: Path, work: Path) -> Path:
    """tokenizer.json + tokenizer_config.json into ``staging``; the whole save stays in ``work``."""
    saved = work / "tokenizer"
    tokenizer.save_pretrained(saved)
    if not (saved / TOKENIZER_FILE).is_file():
        raise ModelLoadError(
            f"the tokenizer ({type(tokenizer).__name__}) cannot be saved as {TOKENIZER_FILE}: "
            "a fast (tokenizers-backed) tokenizer is needed"
        )
    for name in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE):
        if (saved / name).is_file():
            shutil.copy2(saved / name, staging / name)
    return saved


def keep_full_precision(model: Any, hf_dir: Path, tokenizer_dir: Path, dest: Path) -> None:
    """The fine-tuned weights as they are (safetensors copied byte for byte when present), config and tokenizer."""
    dest.mkdir()
    weights = sorted(hf_dir.glob("*.safetensors")) + sorted(hf_dir.glob("*.safetensors.index.json"))
    if weights:
        for file in [hf_dir / "config.json", *weights]:
            shutil.copy2(file, dest / file.name)
    else:  # e.g. pytorch_model.bin only: write safetensors
        model.save_pretrained(dest)
    for file in tokenizer_dir.iterdir():
        if file.is_file():
            shutil.copy2(file, dest / file.name)


# -- the accuracy gate -------------------------------------------------------------------------------
