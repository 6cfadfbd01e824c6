"""Create or update a CloudFormation stack and wait for it; shared by ``role`` and ``api``."""

from __future__ import annotations

from pathlib import Path

from botocore.exceptions import ClientError, WaiterError

from ops.aws import Aws, OpsError, stack_outputs


def _first_failure(aws: Aws, name: str) -> str:
    events = aws.client("cloudformation").describe_stack_events(StackName=name)["StackEvents"]
    failed = [e for e in events if str(e.get("ResourceStatus", "")).endswith("_FAILED")]
    if not failed:
        return "no failed resource reported"
    first = failed[-1]  # events come newest first
    return f"{first['LogicalResourceId']}: {first.get('ResourceStatusReason', '')}"


def _status(aws: Aws, name: str) -> str | None:
    try:
        return str(aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]["StackStatus"])
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def deploy(aws: Aws, name: str, template: Path, parameters: dict[str, str], body: str | None = None) -> dict[str, str]:
    """Create the stack, or update it in place; returns its outputs. ``body``: the template as
    rendered from ``template`` (default: the file as it is)."""
    cfn = aws.client("cloudformation")
    args = {
        "StackName": name,
        "TemplateBody": template.read_text(encoding="utf-8") if body is None else body,
        "Parameters": [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in sorted(parameters.items())],
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": "project", "Value": aws.cfg.project}],
    }
    status = _status(aws, name)
    if status == "ROLLBACK_COMPLETE":  # a failed first creation can only be deleted
        cfn.delete_stack(StackName=name)
        cfn.get_waiter("stack_delete_complete").wait(StackName=name)
        status = None
    waiter_config = {"Delay": 10, "MaxAttempts": 180}
    try:
        if status is None:
            cfn.create_stack(**args, OnFailure="ROLLBACK")
            cfn.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig=waiter_config)
        else:
            try:
                cfn.update_stack(**args)
            except ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
                print(f"stack {name} is up to date")
                return stack_outputs(aws, name)
            cfn.get_waiter("stack_update_complete").wait(StackName=name, WaiterConfig=waiter_config)
    except WaiterError:
        raise OpsError(f"stack {name} failed: {_first_failure(aws, name)}") from None
    print(f"stack {name} ready")
    return stack_outputs(aws, name)


def delete(aws: Aws, name: str) -> bool:
    if _status(aws, name) is None:
        return False
    cfn = aws.client("cloudformation")
    cfn.delete_stack(StackName=name)
    try:
        cfn.get_waiter("stack_delete_complete").wait(StackName=name, WaiterConfig={"Delay": 10, "MaxAttempts": 120})
    except WaiterError:
        raise OpsError(f"stack {name} was not deleted: {_first_failure(aws, name)}") from None
    print(f"deleted stack {name}")
    return True
