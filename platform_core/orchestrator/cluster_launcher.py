"""The in-cluster instance's run launcher: dagster-k8s's K8sRunLauncher, except for the runs `platformctl`
executes on the workstation into the same instance (tagged WORKSTATION_RUN_TAG). Those have no Job, and the
daemon's run monitoring would mark each one failed while it runs ("Job ... could not be found",
dagster_k8s/launcher.py: check_run_worker_health)."""

from __future__ import annotations

import dagster as dg

# Dagster exports no public name for a run worker's health; dagster-k8s's own launcher imports these.
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster_k8s import K8sRunLauncher

from platform_core.orchestrator.instance import WORKSTATION_RUN_TAG


class PlatformRunLauncher(K8sRunLauncher):
    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        workstation = run.tags.get(WORKSTATION_RUN_TAG)
        if workstation:  # its process is on the workstation, out of the cluster's sight: it reports its own end
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"executed by platformctl on {workstation}")
        health: CheckRunHealthResult = super().check_run_worker_health(run)
        return health
