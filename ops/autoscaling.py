"""Target-tracking autoscaling of an endpoint variant on invocations per instance."""

from __future__ import annotations

from typing import Any

from ops.aws import Aws

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def policy_name(endpoint: str) -> str:
    return f"{endpoint}-invocations-per-instance"


def apply(aws: Aws, endpoint: str) -> dict[str, Any] | None:
    """Register the variant as a scalable target and attach the target-tracking policy."""
    e = aws.cfg.endpoint
    s = e.autoscaling
    if not s.enabled:
        return None
    aas = aws.client("application-autoscaling")
    rid = resource_id(endpoint, e.variant)
    aas.register_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        MinCapacity=s.min_instances,
        MaxCapacity=s.max_instances,
    )
    policy = {
        "TargetValue": float(s.invocations_per_instance),
        "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
        "ScaleInCooldown": s.scale_in_cooldown_s,
        "ScaleOutCooldown": s.scale_out_cooldown_s,
    }
    aas.put_scaling_policy(
        PolicyName=policy_name(endpoint),
        ServiceNamespace=NAMESPACE,
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=policy,
    )
    print(f"autoscaling {rid}: {s.min_instances}..{s.max_instances} instances, {policy['TargetValue']:g}/min each")
    return policy


def is_registered(aws: Aws, endpoint: str) -> bool:
    targets = aws.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[resource_id(endpoint, aws.cfg.endpoint.variant)]
    )
    return bool(targets["ScalableTargets"])


def remove(aws: Aws, endpoint: str) -> bool:
    """Deregister the variant (its policies go with it). Returns whether it was registered."""
    if not is_registered(aws, endpoint):
        return False
    aws.client("application-autoscaling").deregister_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=resource_id(endpoint, aws.cfg.endpoint.variant),
        ScalableDimension=DIMENSION,
    )
    return True
