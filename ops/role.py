"""The SageMaker execution role, as a stack (``ops/role.yaml``): one bucket, one repository, logs."""

from __future__ import annotations

from pathlib import Path

from ops import stacks
from ops.aws import Aws

TEMPLATE = Path(__file__).resolve().parent / "role.yaml"


def deploy(aws: Aws) -> str:
    outputs = stacks.deploy(
        aws,
        aws.cfg.role.stack_name,
        TEMPLATE,
        {"BucketName": aws.bucket, "RepositoryName": aws.cfg.image.repository},
    )
    print(f"role {outputs['RoleArn']}")
    return outputs["RoleArn"]
