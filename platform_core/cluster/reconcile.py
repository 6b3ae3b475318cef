"""An asset whose work is one cluster step: the k3s target's own assets, and the services Argo CD deploys for
either code location (the platform's storage and MLflow, the ML location's data API and inference service)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import dagster as dg

from platform_core.catalog import PLATFORM_OWNERS
from platform_core.cluster.resource import ClusterResource
from platform_core.cluster.services import service_step
from platform_core.cluster.step_result import StepResult
from platform_core.decisions import decides


def reconcile_asset(spec: dg.AssetSpec, step: Callable[[ClusterResource], StepResult]) -> dg.AssetsDefinition:
    """`spec`'s asset, materialized by running `step`, which is also its decision: in plan mode
    (`state.planning()`) the step only looks, and says what it would change."""

    @decides(spec.key.to_user_string(), target="k3s")
    def cluster_change(cluster: ClusterResource) -> str:
        return step(cluster).change(plan=True)

    @dg.multi_asset(specs=[spec], name=spec.key.to_python_identifier())
    def reconcile(cluster: ClusterResource) -> dg.MaterializeResult[Any]:
        result = step(cluster)
        return dg.MaterializeResult(metadata={"change": result.change(cluster.plan), **result.metadata})

    return reconcile


def cluster_service_asset(spec: dg.AssetSpec) -> dg.AssetsDefinition:
    """A service Argo CD deploys: healthy in Argo CD, its address (LoadBalancer or port-forward) recorded."""
    name = spec.key.to_user_string()
    return reconcile_asset(spec, lambda cluster: service_step(cluster, name))


def cluster_spec(name: str, group: str, deps: list[str], description: str, kinds: Iterable[str] = ()) -> dg.AssetSpec:
    """The spec of an asset the cluster reconciles; `kinds` beyond "kubernetes" say what it runs."""
    return dg.AssetSpec(
        name,
        group_name=group,
        deps=[dg.AssetKey.from_user_string(d) for d in deps],
        kinds={"kubernetes", *kinds},
        owners=PLATFORM_OWNERS,
        description=description,
    )
