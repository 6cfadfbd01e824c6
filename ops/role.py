"""The SageMaker execution roles, as one stack (``ops/role.yaml``), and which role each kind of work uses.

Three roles, each with only what its work needs (least privilege), under a trust policy that lets only
SageMaker acting for this account and region assume it (``aws:SourceAccount``, ``aws:SourceArn``):

- ``training``: training and tuning jobs. Reads ``<prefix>/data/``, writes ``<prefix>/output/`` and
  ``<prefix>/checkpoints/``.
- ``serving``: the models of endpoints. Reads ``<prefix>/output/`` (the models) and nothing else.
- ``batch``: the models of transform jobs. Reads ``<prefix>/output/`` and ``<prefix>/batch/``, writes
  ``<prefix>/batch/``.

Each pulls the one ECR repository and writes its own CloudWatch logs; with ``security.kms_key_id`` each may
use that key, with a VPC each may manage the jobs' network interfaces. A role comes from
``aws.<kind>_role_arn``, else ``aws.role_arn`` (one role for all, as before), else the stack's outputs. A
stack made before the roles were split has only ``RoleArn``: it is used for all three until
``python -m ops role`` updates the stack.
"""

from __future__ import annotations

from pathlib import Path

from ops import security, stacks
from ops.aws import Aws, stack_outputs
from ops.config import ConfigError

TEMPLATE = Path(__file__).resolve().parent / "role.yaml"
KINDS = ("training", "serving", "batch")
OUTPUTS = {"training": "TrainingRoleArn", "serving": "ServingRoleArn", "batch": "BatchRoleArn"}
LEGACY_OUTPUT = "RoleArn"  # the single role of earlier stacks (now: the serving role)
# Where the stack's role of each kind may read (and, for training and batch, write) under the prefix.
AREAS = {"training": ("data", "output", "checkpoints"), "serving": ("output",), "batch": ("output", "batch")}


def parameters(aws: Aws) -> dict[str, str]:
    prefix = aws.cfg.aws.prefix.strip("/")
    return {
        "BucketName": aws.bucket,
        "KeyPrefix": f"{prefix}/" if prefix else "",
        "RepositoryName": aws.cfg.image.repository,
        "KmsKeyArn": security.kms_key_arn(aws) or "",
        "UseVpc": "true" if security.vpc_config(aws) else "false",
    }


def deploy(aws: Aws) -> dict[str, str]:
    """Create or update the role stack; returns each kind's role ARN."""
    outputs = stacks.deploy(aws, aws.cfg.role.stack_name, TEMPLATE, parameters(aws))
    arns = {kind: outputs[OUTPUTS[kind]] for kind in KINDS}
    for kind, arn in arns.items():
        print(f"{kind} role {arn}")
    return arns


def configured(aws: Aws, kind: str) -> str:
    """The role the configuration names for ``kind`` (its own setting, else ``aws.role_arn``); empty: none."""
    if kind not in KINDS:
        raise ValueError(f"role kind {kind!r} is not one of {', '.join(KINDS)}")
    return str(getattr(aws.cfg.aws, f"{kind}_role_arn") or aws.cfg.aws.role_arn)


def arn(aws: Aws, kind: str) -> str:
    """The execution role of ``kind`` (training, serving, batch): configured, else the role stack's."""
    if aws.local:
        return aws.role_arn  # local mode's placeholder: no AWS role is ever assumed
    chosen = configured(aws, kind)
    if chosen:
        return chosen
    stack = aws.cfg.role.stack_name
    outputs = stack_outputs(aws, stack)
    if OUTPUTS[kind] in outputs:
        return outputs[OUTPUTS[kind]]
    if LEGACY_OUTPUT in outputs:
        print(
            f"role stack {stack} predates separate roles: its one role serves the {kind} work too; "
            "`python -m ops role` splits it into training, serving and batch roles"
        )
        return outputs[LEGACY_OUTPUT]
    raise ConfigError(
        f"no SageMaker execution role for {kind}: set aws.{kind}_role_arn or aws.role_arn "
        f"(TEXTCLF_AWS_{kind.upper()}_ROLE_ARN, TEXTCLF_AWS_ROLE_ARN), or create the roles with "
        f"`python -m ops role` (stack {stack})"
    )


def check_reach(aws: Aws, kind: str, what: str, uri: str, area: str) -> None:
    """Refuse, before anything is created, an S3 location the stack's ``kind`` role cannot reach: the job
    would fail only once its instances are up. A configured role is the user's to scope: not checked."""
    if aws.local or configured(aws, kind):
        return
    root = aws.s3_uri(area)
    if not uri.startswith(root):
        reach = ", ".join(aws.s3_uri(a) for a in AREAS[kind])
        raise ConfigError(
            f"{what} {uri} is outside {root}: the {kind} role of `python -m ops role` reaches only {reach} "
            f"(least privilege). Put it under {root}, or set aws.{kind}_role_arn to a role that can reach it"
        )
