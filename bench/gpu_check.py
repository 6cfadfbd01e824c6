"""Fine-tune on whatever device this machine has, once per precision: the check to run on a GPU.

For each configuration (``bf16``: ``mixed_precision=auto``, which takes bf16 on Ampere and newer;
``fp16``: forced, with its GradScaler; ``cpu``: ``device=cpu``) this runs the product's own
``textclf train`` on the bundled demo data (local_test/test_dir) with a pretrained encoder
(``--pretrained DIR``: a Hugging Face directory, e.g. the MiniLM that scripts/fetch-minilm.sh
fetches; default: a random BERT-small shape that needs no download), and records the device line
the job printed, its exit status, optimizer steps per second and the last training loss.

On a machine without a GPU the ``bf16``/``fp16`` jobs must fail with the "no GPU" reason (device
``cuda`` is asked for), which is what this script shows there; do not read GPU results into such a
run. Usage, on the GPU machine, in under 10 minutes:

    .venv/bin/python bench/gpu_check.py --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib as bl

CONFIGS: dict[str, dict[str, str]] = {
    "bf16": {"device": "cuda", "mixed_precision": "auto"},
    "fp16": {"device": "cuda", "mixed_precision": "fp16"},
    "cpu": {"device": "cpu"},
}
DEMO = bl.REPO / "local_test" / "test_dir" / "input" / "data"


def small_bert(out: Path) -> Path:
    """A random BERT-small (4 layers, hidden 512) over the demo data's words: enough GPU work to time."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for f in DEMO.glob("*/*.csv") for row in bl.read_rows(f) for w in row["text"].lower().split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(str(out))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                        intermediate_size=2048, max_position_embeddings=128)  # fmt: skip
    BertModel(config).save_pretrained(str(out))
    return out


def run_config(name: str, overrides: dict[str, str], pretrained: Path, work: Path, steps: int) -> dict[str, Any]:
    root = work / name / "opt_ml"
    shutil.rmtree(root.parent, ignore_errors=True)
    for channel in ("train", "validation"):
        shutil.copytree(DEMO / channel, root / "input" / "data" / channel)
    shutil.copytree(pretrained, root / "input" / "data" / "pretrained")
    (root / "input" / "config").mkdir(parents=True)
    # A speed check: an undertrained model may miss the INT8 gate, so FP32 ONNX is shipped then.
    hyperparameters = {
        "max_steps": str(steps),
        "epochs": "100",
        "batch_size": "32",
        "max_seq_length": "64",
        "log_every_steps": "10",
        "checkpoint_every_steps": "0",
        "on_accuracy_drop": "fp32",
        **overrides,
    }
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    env = dict(os.environ, SM_ROOT=str(root), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "textclf.cli", "train"], env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    out = proc.stdout + proc.stderr
    (work / f"{name}.log").write_text(out)
    device = next((line for line in out.splitlines() if line.startswith("device: ")), "")
    failure = root / "output" / "failure"
    rates = [float(v) for v in re.findall(r"\bsamples_per_second=([0-9.eE+-]+);", out)]
    losses = [float(v) for v in re.findall(r"\btrain_loss=([0-9.eE+-]+);", out)]
    return {
        "config": name,
        "hyperparameters": " ".join(f"{k}={v}" for k, v in overrides.items()),
        "exit": proc.returncode,
        "device line": device or "(none)",
        "failure": failure.read_text().splitlines()[0] if failure.is_file() else "",
        "steps/s": round(rates[-1] / 32, 2) if rates else None,
        "last train_loss": round(losses[-1], 4) if losses else None,
        "wall s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per configuration")
    parser.add_argument("--pretrained", type=Path, help="a Hugging Face encoder directory (default: random BERT-small)")
    parser.add_argument("--name", default="gpu")
    parser.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    args = parser.parse_args()
    run = bl.Run(args.name)
    work = bl.WORK_DIR / "gpu-check"
    pretrained = args.pretrained or small_bert(work / "bert-small")
    rows = [run_config(name, CONFIGS[name], pretrained, work, args.steps) for name in args.configs]
    columns = ["config", "hyperparameters", "exit", "device line", "failure", "steps/s", "last train_loss", "wall s"]
    notes = [f"pretrained: {pretrained if args.pretrained else 'random BERT-small (4 x 512)'}; logs in {work}"]
    run.finish({"rows": rows}, bl.md_table(rows, columns), notes, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
