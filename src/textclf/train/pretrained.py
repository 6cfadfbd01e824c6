"""The pretrained encoder and its tokenizer: found, unpacked and loaded safely.

Where a model comes from, in order: the ``pretrained`` channel (a Hugging Face directory, or a
``.tar.gz`` of one), ``model_name_or_path`` as a local directory or archive, then
``model_name_or_path`` as a hub id (when the network allows). When none works, the error lists
every place that was tried. An archive is unpacked by ``archives.extract``, which checks every
member itself (the stdlib's extraction filter is missing or unsafe on the Pythons we ship with).
Weights load from safetensors; a checkpoint that only has torch pickles is read with
``torch.load(weights_only=True)`` (transformers' own loader, told so), and a pickle holding anything
but tensors is refused as a ``ModelLoadError``.
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from textclf.errors import ModelLoadError
from textclf.export.onnx_graph import model_input_names
from textclf.train import archives, checkpoints, families
from textclf.train.data import LabelMap

PRETRAINED_CHANNEL = "pretrained"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelSource:
    """Where the weights are: a local directory, or a hub id."""

    location: str
    is_local: bool
    description: str  # for logs and the manifest's source_model
    tried: tuple[str, ...] = ()  # places looked at before this one, for the error if loading fails


@dataclass
class LoadedModel:
    model: Any  # transformers.PreTrainedModel (torch.nn.Module)
    tokenizer: Any  # a fast transformers tokenizer
    source: ModelSource
    input_names: tuple[str, ...]  # what the model's forward takes of input_ids/attention_mask/token_type_ids


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def find_model_dir(root: Path, max_depth: int = 2) -> Path | None:
    """The directory under ``root`` (itself, or a folder up to ``max_depth`` down) holding config.json."""
    for depth in range(max_depth + 1):
        hits = sorted(p.parent for p in root.glob("/".join(["*"] * depth + ["config.json"])))
        if hits:
            return hits[0]
    return None


def _local_dir(path: Path, work_dir: Path, tried: list[str], what: str) -> Path | None:
    """A model directory from a local directory or archive, or None (with the reason in ``tried``)."""
    if not path.exists():
        tried.append(f"{what} {path}: does not exist")
        return None
    if path.is_dir():
        packed = sorted(p for p in path.iterdir() if _is_archive(p))
        found = find_model_dir(path)
        if found is None and len(packed) == 1:
            path = packed[0]
        elif found is None:
            listing = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
            tried.append(f"{what} {path}: no config.json and no single .tar.gz in it (found: {listing})")
            return None
        else:
            return found
    if _is_archive(path):
        unpacked = archives.extract(path, Path(tempfile.mkdtemp(prefix="pretrained-", dir=work_dir)))
        found = find_model_dir(unpacked)
        if found is None:
            tried.append(f"{what} archive {path}: holds no config.json")
        return found
    tried.append(f"{what} {path}: neither a directory nor a .tar.gz archive")
    return None


def resolve(model_name_or_path: str, channels: dict[str, Path], work_dir: Path) -> ModelSource:
    """Find the pretrained model, or raise ``ModelLoadError`` listing where it looked."""
    tried: list[str] = []
    if PRETRAINED_CHANNEL in channels:
        found = _local_dir(channels[PRETRAINED_CHANNEL], work_dir, tried, f"channel {PRETRAINED_CHANNEL!r}")
        if found is None:
            raise ModelLoadError("cannot load the pretrained model; looked in " + "; ".join(tried))
        return ModelSource(str(found), True, f"channel {PRETRAINED_CHANNEL!r}")
    tried.append(f"channel {PRETRAINED_CHANNEL!r}: not provided")
    local = Path(model_name_or_path).expanduser()
    if local.is_absolute() or local.exists() or model_name_or_path.startswith((".", "~")):
        found = _local_dir(local, work_dir, tried, "local path")
        if found is None:
            raise ModelLoadError("cannot load the pretrained model; looked in " + "; ".join(tried))
        return ModelSource(str(found), True, str(local))
    tried.append(f"local path {local}: does not exist")
    return ModelSource(model_name_or_path, False, f"hub id {model_name_or_path}", tuple(tried))


def _weights_kwargs(source: ModelSource) -> dict[str, Any]:
    if not source.is_local:
        return {"use_safetensors": True}
    files = {p.name for p in Path(source.location).iterdir()}
    if files & set(SAFETENSORS_FILES):
        return {"use_safetensors": True}
    if files & set(PICKLE_FILES):
        # No safetensors: transformers reads the pickle with torch.load(weights_only=True), which
        # refuses anything but tensors and plain containers.
        return {"use_safetensors": False, "weights_only": True}
    raise ModelLoadError(f"{source.location} holds no weights ({' or '.join(SAFETENSORS_FILES + PICKLE_FILES)})")


def load(source: ModelSource, label_map: LabelMap, max_seq_length: int) -> LoadedModel:
    """Load a sequence classifier with a fresh head for ``label_map``, and its fast tokenizer."""
    where = source.location
    problem_type = "multi_label_classification" if label_map.multi_label else "single_label_classification"
    try:
        config = AutoConfig.from_pretrained(
            where,
            id2label=label_map.id2label,
            label2id=label_map.label2id,
            problem_type=problem_type,
            local_files_only=source.is_local,
        )
        families.check(config.to_dict(), repr(where))  # a job was refused (or warned) by load_tokenizer already
        model = AutoModelForSequenceClassification.from_pretrained(
            where, config=config, dtype=torch.float32, ignore_mismatched_sizes=True, **_weights_kwargs(source)
        )
    except ModelLoadError:
        raise
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) met something besides tensors
        raise ModelLoadError(
            f"refusing the weights in {where}: its torch pickle ({PICKLE_FILES[0]}) holds objects "
            f"other than tensors ({checkpoints.unpickling_refusal(exc)}); provide model.safetensors instead"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise _not_found(source, exc) from None
    tokenizer = _load_tokenizer(source)
    limit = families.max_tokens(config.to_dict())
    if limit is not None and max_seq_length > limit:
        raise ModelLoadError(f"max_seq_length {max_seq_length} exceeds the {limit} tokens the model's positions allow "
                             f"({where})")  # fmt: skip
    return LoadedModel(model, tokenizer, source, tuple(model_input_names(model)))


def _not_found(source: ModelSource, exc: BaseException) -> ModelLoadError:
    looked = "; ".join([*source.tried, f"{source.description}: {' '.join(str(exc).split())}"])
    return ModelLoadError(f"cannot load the pretrained model {source.location!r}; looked in {looked}")


def check_family(source: ModelSource) -> families.Verdict:
    """Read the model's config.json and refuse a family textclf does not support (``families.check``),
    before its tokenizer, its weights or the data are loaded; an encoder outside the table is
    allowed with a warning in the log."""
    where = source.location
    if source.is_local:
        config_file = Path(where) / "config.json"
        try:
            config = families.read_config(config_file.read_text(encoding="utf-8"), repr(where))
        except OSError as exc:
            raise ModelLoadError(f"cannot read {config_file}: {exc}") from None
    else:
        from transformers import PretrainedConfig

        try:
            config, _ = PretrainedConfig.get_config_dict(where)
        except OSError as exc:  # a hub id that is not there: every place looked at is the answer
            raise _not_found(source, exc) from None
    verdict = families.check(config, repr(where))
    if verdict.warning:
        print(f"warning: {verdict.warning}", flush=True)
    return verdict


def load_tokenizer(source: ModelSource) -> Any:
    """The model's fast tokenizer (a transformers ``PreTrainedTokenizerFast``), or a clear refusal.

    The model's family is checked first (``check_family``): this is the first thing ``train`` reads
    of the pretrained model, right after finding it."""
    check_family(source)
    return _load_tokenizer(source)


def _load_tokenizer(source: ModelSource) -> Any:
    where = source.location
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=source.is_local)
    except OSError as exc:
        if not source.is_local:  # a hub id that is not there: every place looked at is the answer
            raise _not_found(source, exc) from None
        raise ModelLoadError(f"cannot load the tokenizer of {where!r}: {exc}") from None
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {where!r}: {exc}") from None
    if not getattr(tokenizer, "is_fast", False) or getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ModelLoadError(
            f"the tokenizer of {where!r} ({type(tokenizer).__name__}) is not a fast (tokenizers) tokenizer; "
            "textclf needs tokenizer.json so that training and serving tokenize identically"
        )
    return tokenizer


def freeze_layers(model: Any, count: int) -> int:
    """Freeze the embeddings and the first ``count`` encoder layers (-1: the whole encoder).

    Returns the number of frozen parameters. The classification head always trains.
    """
    if count == 0:
        return 0
    base = getattr(model, model.base_model_prefix, None)
    if base is None:
        raise ModelLoadError(f"cannot freeze layers of {type(model).__name__}: no base model found")
    layers = _encoder_layers(base)
    frozen = [base.embeddings] if hasattr(base, "embeddings") else []
    if count < 0:
        frozen = [base]
    else:
        if count > len(layers):
            raise ModelLoadError(f"freeze_layers {count} exceeds the model's {len(layers)} encoder layers")
        frozen += list(layers[:count])
    n = 0
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)
            n += param.numel()
    return n


def _encoder_layers(base: Any) -> list[Any]:
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None:
            return list(obj)
    raise ModelLoadError(f"cannot find the encoder layers of {type(base).__name__} to freeze")
