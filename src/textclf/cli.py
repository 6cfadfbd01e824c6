"""``textclf``: the image's ENTRYPOINT and the command line.

SageMaker runs the image as ``docker run IMAGE train`` or ``docker run IMAGE serve``; the v3 SDK's
local mode passes no argument, which means ``train``. Each command imports its job only when it
runs: ``serve`` never loads torch (the slim image has none), and building this parser loads neither.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from textclf.contract import job_user, opt_ml
from textclf.contract.model_dir import PRECISIONS, TRUNCATIONS
from textclf.errors import EXIT_OK, EXIT_USER_ERROR, UserError
from textclf.export.options import ON_ACCURACY_DROP


def _train(_: argparse.Namespace) -> int:
    # Before anything is read: a folder it cannot write, or an input it cannot read, fails the job
    # with the fix, not a traceback.
    if reason := job_user.access_problem("train", opt_ml.paths()):
        return job_user.report(reason, opt_ml.paths())
    from textclf.train.job import main as train_main

    try:
        return train_main()
    finally:
        job_user.share_model(opt_ml.paths())


def _serve(_: argparse.Namespace) -> int:
    from textclf.serve.supervisor import main as serve_main

    return serve_main()


def _export(args: argparse.Namespace) -> int:
    from textclf.export.cli import main as export_main

    return export_main(args)


def _predict(args: argparse.Namespace) -> int:
    from textclf.model.predictor import Classifier

    try:
        classifier = Classifier.load(args.model_dir)
        results = classifier.predict(args.texts, top_k=args.top_k)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    for text, result in zip(args.texts, results, strict=True):
        print(json.dumps({"text": text, "predictions": result}, ensure_ascii=False))
    return EXIT_OK


def _seal(args: argparse.Namespace) -> int:
    """Re-hash ``code/`` after an edit of the rules (every file with ``--all``), printing what changed:
    the manifest must list every file ``serve`` loads, and editing rules must stay one command."""
    from textclf.contract.model_dir import seal

    try:
        report = seal(args.model_dir, all_files=args.all)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # a read-only or foreign-owned model directory
        print(f"error: cannot seal {args.model_dir}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    for line in report.lines():
        print(line)
    what = "every file" if args.all else "code/"
    print(f"{args.model_dir}: {'already sealed, nothing changed' if report.unchanged else f'sealed ({what})'}")
    return EXIT_OK


def _hyperparameters(_: argparse.Namespace) -> int:
    from textclf.train.hyperparameters import markdown_table

    print(markdown_table())
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textclf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="run a SageMaker training job on the /opt/ml tree (SM_ROOT overrides)").set_defaults(
        func=_train
    )
    sub.add_parser("serve", help="serve /opt/ml/model on port 8080 (nginx -> gunicorn -> Flask)").set_defaults(
        func=_serve
    )
    export = sub.add_parser("export", help="turn a fine-tuned Hugging Face directory into a model directory")
    export.add_argument("src", help="Hugging Face sequence-classification directory (config, weights, tokenizer)")
    export.add_argument("dst", help="model directory to write")
    export.add_argument("--precision", choices=PRECISIONS, default="int8")
    export.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="per-channel INT8 weight scales (default; --no-per-channel: one scale per tensor)",
    )
    export.add_argument("--max-seq-length", type=int, default=None, help="default: the model's limit, at most 512")
    export.add_argument("--truncation", choices=TRUNCATIONS, default="head")
    export.add_argument("--text-pair", action="store_true", help="the model classifies text pairs")
    export.add_argument("--validation", help="CSV/TSV/JSONL with text (and label) columns for the accuracy gate")
    export.add_argument("--text-column", default="text")
    export.add_argument("--text-pair-column", default="")
    export.add_argument("--label-column", default="label")
    export.add_argument("--max-accuracy-drop", type=float, default=1.0, help="points")
    export.add_argument("--on-accuracy-drop", choices=ON_ACCURACY_DROP, default="fail")
    export.add_argument("--no-full-precision", action="store_true", help="do not copy the HF weights to hf/")
    export.set_defaults(func=_export)
    predict = sub.add_parser("predict", help="classify texts with a model directory")
    predict.add_argument("model_dir")
    predict.add_argument("texts", nargs="+")
    predict.add_argument("--top-k", type=_positive_int, default=1)
    predict.set_defaults(func=_predict)
    seal = sub.add_parser(
        "seal",
        help="after editing code/ (business rules), record its files' sha256 in manifest.json so serve accepts them",
        description=(
            "Re-hash the files under MODEL_DIR/code into manifest.json and print what changed. Every other "
            "file must still match the manifest: sealing rules never blesses a changed model. Hooks are "
            "trusted code that runs with the endpoint's permissions: review what you seal."
        ),
    )
    seal.add_argument("model_dir", metavar="MODEL_DIR", help="the model directory (the one holding manifest.json)")
    seal.add_argument(
        "--all",
        action="store_true",
        help="re-hash every file, model and tokenizer included (only for a model you changed on purpose)",
    )
    seal.set_defaults(func=_seal)
    sub.add_parser("hyperparameters", help="print the hyperparameter table (markdown)").set_defaults(
        func=_hyperparameters
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list:
        args_list = ["train"]  # SageMaker SDK v3 local mode starts the container without an argument
    args = build_parser().parse_args(args_list)
    try:  # in the image, started as root: hand the job's folders to its user and drop to that user
        done = job_user.become_job_user(args.command)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if done and args.command in ("train", "serve"):
        print(f"textclf {args.command}: {done}", file=sys.stderr, flush=True)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
