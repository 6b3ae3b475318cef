"""The in-cluster instance's run launcher: dagster-k8s's K8sRunLauncher, except for the runs executed outside the
cluster into the same instance (`platformctl up`, `platformctl dagster asset materialize` on the workstation).
Those have no Job: K8sRunLauncher would call each one dead while it runs ("Job ... could not be found",
dagster_k8s/launcher.py: check_run_worker_health), and its Terminate would delete nothing.

A run is the cluster's when this instance launched it: `DagsterInstance.launch_run` is what records a run's launch
(its RUN_STARTING event, the run stats' `launch_time`); a run executed in process never has one. A re-execution
from the UI is launched, so it is the cluster's even though it copies the workstation's tags.
"""

from __future__ import annotations

import time

import dagster as dg

# Dagster exports no public name for a run worker's health; dagster-k8s's own launcher imports these.
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster_k8s import K8sRunLauncher

from platform_core.orchestrator.instance import WORKSTATION_RUN_TAG

# A run executed elsewhere that has written no event for this long is taken for dead (its process was killed):
# failed, so it holds none of the queue's slots for good. Its steps log at least every Pipes poll while they work.
SILENT_RUN_SECONDS = 3600


class PlatformRunLauncher(K8sRunLauncher):
    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        if self._launched_here(run):
            health: CheckRunHealthResult = super().check_run_worker_health(run)
            return health
        silent = time.time() - self._last_event_time(run)
        where = _where(run)
        if silent > SILENT_RUN_SECONDS:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"executed {where}, silent for {silent / 60:.0f} min")
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"executed {where}")

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or self._launched_here(run):
            terminated: bool = super().terminate(run_id)  # type: ignore[no-untyped-call]  # dagster-k8s's
            return terminated
        message = f"not terminated: executed {_where(run)}, it is stopped there (Ctrl-C)"
        self._instance.report_engine_event(message, run, cls=self.__class__)
        return False

    def get_run_worker_debug_info(self, run: dg.DagsterRun, include_container_logs: bool | None = True) -> str | None:
        if self._launched_here(run):
            info: str | None = super().get_run_worker_debug_info(run, include_container_logs)
            return info
        return f"executed {_where(run)}: no Kubernetes Job to describe"

    def _launched_here(self, run: dg.DagsterRun) -> bool:
        return self._instance.get_run_stats(run.run_id).launch_time is not None

    def _last_event_time(self, run: dg.DagsterRun) -> float:
        records = self._instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
        return records[0].event_log_entry.timestamp if records else 0.0


def _where(run: dg.DagsterRun) -> str:
    return (
        f"by platformctl on {run.tags[WORKSTATION_RUN_TAG]}"
        if WORKSTATION_RUN_TAG in run.tags
        else "outside the cluster"
    )
