"""``python -m ops <command>``: drive SageMaker end to end. Each command lives in its own module."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops import config as config_module
from ops import local
from ops.aws import Aws, OpsError
from ops.local import LocalAws
from ops.variants import VARIANTS


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OpsError(f"{what} must look like NAME=VALUE, got {item!r}")
        if key in result:
            raise OpsError(f"{what} {key} given twice ({result[key]!r} and {value!r})")
        result[key] = value
    return result


def _show(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _image(aws: Aws, args: argparse.Namespace) -> None:
    from ops import image

    push = not (args.no_push or aws.local)  # local mode runs the images under their local tags
    image.build_and_push(aws, tag=args.tag, push=push, variant_names=args.variant)


def _role(aws: Aws, _: argparse.Namespace) -> None:
    from ops import role

    role.deploy(aws)


def _upload(aws: Aws, args: argparse.Namespace) -> None:
    from ops import channels

    _show(channels.upload(aws, {k: Path(v) for k, v in _pairs(args.channel, "--channel").items()}))


def _train(aws: Aws, args: argparse.Namespace) -> None:
    from ops import training

    if isinstance(aws, LocalAws):
        if args.resume_from:
            raise OpsError("--resume-from: local mode keeps no checkpoints between jobs")
        local.train(aws, _pairs(args.channel, "--channel"), _pairs(args.hp, "--hp"))
        return
    training.start(
        aws,
        channels=_pairs(args.channel, "--channel") or None,
        overrides=_pairs(args.hp, "--hp"),
        resume_from=args.resume_from,
        wait=args.wait,
    )


def _tune(aws: Aws, args: argparse.Namespace) -> None:
    from ops import tuning

    if args.report:
        tuning.print_report(tuning.report(aws, args.report, top=args.top))
        return
    tuning.start(aws, channels=_pairs(args.channel, "--channel") or None, ranges_file=args.ranges, wait=args.wait)


def _model_source(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--training-job", help="use this completed training job's model.tar.gz")
    group.add_argument("--tuning-job", help="use the best training job of this tuning job")
    group.add_argument("--model-data", help="s3://.../model.tar.gz")


def _deploy(aws: Aws, args: argparse.Namespace) -> None:
    from ops import endpoint

    if isinstance(aws, LocalAws):
        local.deploy(aws, local.resolve_model_data(aws, args.training_job, args.tuning_job, args.model_data))
        return
    endpoint.use_deploy_arguments(
        aws.cfg.endpoint,
        args.serverless,
        args.memory_size_mb,
        args.max_concurrency,
        args.provisioned_concurrency,
        args.to_provisioned,
    )
    data = endpoint.resolve_model_data(aws, args.training_job, args.tuning_job, args.model_data)
    endpoint.deploy(aws, data, autoscale=not args.no_autoscaling, to_provisioned=args.to_provisioned)


def _autoscale(aws: Aws, _: argparse.Namespace) -> None:
    from ops import autoscaling, endpoint

    name = aws.cfg.endpoint.name
    if not aws.cfg.endpoint.autoscaling.enabled:
        raise OpsError("endpoint.autoscaling.enabled is false: nothing to apply")
    if endpoint.describe(aws) is None:
        raise OpsError(f"endpoint {name} does not exist: create it with `python -m ops deploy`")
    autoscaling.apply(aws, name)


def _batch(aws: Aws, args: argparse.Namespace) -> None:
    from ops import batch, endpoint

    if isinstance(aws, LocalAws):
        if args.model:
            raise OpsError("--model: local mode keeps no models between commands; use --training-job or --model-data")
        local.batch(
            aws,
            args.input,
            local.resolve_model_data(aws, args.training_job, args.tuning_job, args.model_data),
            args.output,
        )
        return
    data = None
    if not args.model:
        data = endpoint.resolve_model_data(aws, args.training_job, args.tuning_job, args.model_data)
    batch.start(aws, args.input, model_data=data, model_name=args.model, output_uri=args.output, wait=args.wait)


def _request(args: argparse.Namespace) -> Any:
    from ops.invoke import build_request

    return build_request(
        args.texts or None,
        Path(args.body_file) if args.body_file else None,
        args.content_type,
        args.accept,
        args.custom_attributes,
    )


def _invoke(aws: Aws, args: argparse.Namespace) -> None:
    from ops.invoke import invoke

    body, headers = invoke(aws, _request(args))
    for name, value in headers.items():
        print(f"{name}: {value}", file=sys.stderr)
    sys.stdout.write(body.decode("utf-8", errors="replace").rstrip("\n") + "\n")


def _api(aws: Aws, args: argparse.Namespace) -> None:
    from ops import api

    if args.api_command == "deploy":
        api.deploy(aws)
    elif args.api_command == "url":
        print(api.url(aws))
    elif args.api_command == "key":
        print(api.api_key(aws))
    elif args.api_command == "invoke":
        status, headers, body = api.call(aws, _request(args), endpoint_url=args.url, key=args.api_key)
        print(f"HTTP {status}", file=sys.stderr)
        for name in ("Content-Type", "X-Amzn-SageMaker-Custom-Attributes"):
            if name in headers:
                print(f"{name}: {headers[name]}", file=sys.stderr)
        sys.stdout.write(body.decode("utf-8", errors="replace").rstrip("\n") + "\n")
        if status >= 400:
            raise OpsError(f"the API answered {status}")


def _teardown(aws: Aws, args: argparse.Namespace) -> None:
    from ops import teardown

    _show(teardown.teardown(aws, everything=args.all))


def _config(aws: Aws, _: argparse.Namespace) -> None:
    _show(config_module.redacted(aws.cfg))


def _request_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help='texts to classify (sent as {"inputs": [...]})')
    parser.add_argument("--body-file", help="send this file as the body instead")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--accept", default="application/json")
    parser.add_argument(
        "--custom-attributes", default="", help="X-Amzn-SageMaker-Custom-Attributes, e.g. threshold=0.7"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__)
    parser.add_argument("--config", help="TOML file (default: $TEXTCLF_OPS_CONFIG, else ops/config.toml)")
    parser.add_argument(
        "--local",
        action="store_true",
        help="run on this machine's Docker with the SageMaker SDK's local mode, no AWS "
        "(config, image, train, deploy, invoke, batch; see ops/local.py)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print the resolved configuration")
    p.set_defaults(func=_config)

    p = sub.add_parser("role", help="create/update the SageMaker execution role stack")
    p.set_defaults(func=_role)

    p = sub.add_parser("image", help="build the image variants and push them to ECR (repository created if missing)")
    p.add_argument(
        "--tag",
        help="base image tag (default: image.tag, else a new <commit>-<UTC time> one, printed); the gpu and serve "
        "variants add -gpu, -serve. Tags are immutable in ECR: a tag it holds is refused",
    )
    p.add_argument(
        "--variant",
        action="append",
        choices=[*VARIANTS, "all"],
        help="cpu, gpu, serve or all; repeatable (default: the training instance type's variant and serve)",
    )
    p.add_argument("--no-push", action="store_true", help="build only")
    p.set_defaults(func=_image)

    p = sub.add_parser("upload", help="upload local channels to S3 (bucket created if missing)")
    p.add_argument("--channel", action="append", required=True, help="NAME=PATH, e.g. train=data/train.csv")
    p.set_defaults(func=_upload)

    p = sub.add_parser("train", help="start a training job (spot + checkpoints per config)")
    p.add_argument("--channel", action="append", help="NAME=s3://... (default: the uploaded channels)")
    p.add_argument("--hp", action="append", help="NAME=VALUE hyperparameter override")
    p.add_argument("--resume-from", help="continue from this earlier job's checkpoints")
    p.add_argument("--wait", action="store_true", help="wait for the job and stream its logs")
    p.set_defaults(func=_train)

    p = sub.add_parser("tune", help="start a tuning job, or --report one")
    p.add_argument("--channel", action="append", help="NAME=s3://... (default: the uploaded channels)")
    p.add_argument("--ranges", help="ranges file (TOML/JSON) instead of [tuning.ranges]")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--report", metavar="TUNING_JOB", help="print the best job and the top N of a tuning job")
    p.add_argument("--top", type=int, default=5)
    p.set_defaults(func=_tune)

    p = sub.add_parser("deploy", help="create the endpoint, or safely update it if it exists")
    _model_source(p)
    p.add_argument("--no-autoscaling", action="store_true")
    p.add_argument(
        "--serverless",
        action="store_true",
        help="a Serverless Inference endpoint (ServerlessConfig, no instances); default: endpoint.serverless.enabled",
    )
    p.add_argument("--memory-size-mb", type=int, help="serverless: 1024, 2048, 3072, 4096, 5120 or 6144")
    p.add_argument("--max-concurrency", type=int, help="serverless: concurrent invocations, 1..200")
    p.add_argument("--provisioned-concurrency", type=int, help="serverless: kept warm, 0..max-concurrency")
    p.add_argument(
        "--to-provisioned",
        action="store_true",
        help="update a serverless endpoint to instances (SageMaker cannot turn it back to serverless)",
    )
    p.set_defaults(func=_deploy)

    p = sub.add_parser("autoscale", help="(re)apply the endpoint's autoscaling policy")
    p.set_defaults(func=_autoscale)

    p = sub.add_parser("batch", help="run Batch Transform over JSON Lines")
    p.add_argument("--input", required=True, help="s3:// prefix of .jsonl files")
    p.add_argument("--output", help="s3:// prefix for results (default: <prefix>/batch/<job>/)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="an existing SageMaker model")
    src.add_argument("--training-job")
    src.add_argument("--tuning-job")
    src.add_argument("--model-data")
    p.add_argument("--wait", action="store_true")
    p.set_defaults(func=_batch)

    p = sub.add_parser("invoke", help="call the endpoint directly (sagemaker-runtime)")
    _request_arguments(p)
    p.set_defaults(func=_invoke)

    p = sub.add_parser("api", help="API Gateway + Lambda: deploy | url | key | invoke")
    api_sub = p.add_subparsers(dest="api_command", required=True)
    api_sub.add_parser("deploy", help="package the Lambda and create/update the API stack")
    api_sub.add_parser("url", help="print the invoke URL")
    api_sub.add_parser("key", help="print the API key's value")
    p_inv = api_sub.add_parser("invoke", help="POST through the API as a client would")
    _request_arguments(p_inv)
    p_inv.add_argument("--url", help="default: the stack's InvokeUrl")
    p_inv.add_argument("--api-key", help="default: looked up from the stack")
    p.set_defaults(func=_api)

    p = sub.add_parser("teardown", help="delete the API stack, endpoint, configs and models")
    p.add_argument("--all", action="store_true", help="also stop jobs, delete the role, repository and S3 data")
    p.set_defaults(func=_teardown)
    return parser


def main(argv: Sequence[str] | None = None, aws: Aws | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if aws is None:
            cfg = config_module.load(args.config)
            if args.local:
                local.refuse_unsupported(args.command)
            aws = LocalAws(cfg) if args.local else Aws(cfg)
        args.func(aws, args)
    except (OpsError, config_module.ConfigError, ClientError, BotoCoreError) as exc:
        # AWS's own refusals (access denied, no such job, no credentials) read as well as ours
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
