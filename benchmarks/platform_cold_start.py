"""Cold start of the whole platform: through Dagster versus the same steps called directly.

Each round makes a fresh state directory and fresh ports, then either
  - runs the `platform_up` job (every asset and check of the platform location) in process, or
  - calls the same service verbs and the same API calls in a plain loop, no Dagster,
then stops everything. Rounds are interleaved, since this machine's speed drifts over minutes.
Target: Dagster / direct <= 1.3x, and the whole platform <= 30 s on 2 cores.

    .venv/bin/python benchmarks/platform_cold_start.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platform_assets.definitions import build_definitions
from platform_core.state import load_platform
from platform_core.targets import build_resources
from tests.stacks import write_stack_config

SERVICE_KEYS = ("mlflow_resource", "seaweedfs_resource", "postgres_resource")


def direct(config: Path) -> float:
    """The raw steps: start each service, create databases and buckets, the same probes the checks make."""
    cfg, state = load_platform(config)
    r = build_resources(cfg, state, config)
    pg, weed, mlflow, host = r["postgres_resource"], r["seaweedfs_resource"], r["mlflow_resource"], r["host_resource"]
    started = time.perf_counter()
    host.facts()
    host.port_conflicts()
    pg.ensure_server()
    weed.ensure_server()
    for db in cfg.databases:
        pg.ensure_database(db)
        pg.query(db.owner, db.name, "select 1")
    for bucket in cfg.buckets:
        weed.ensure_bucket(bucket.name)
        weed.round_trip(bucket.name)
    weed.wrong_secret_refused()
    mlflow.ensure_server()  # as the mlflow_server asset does: the server, then its users, then the models
    mlflow.ensure_users()
    mlflow.claim_models()
    mlflow.round_trip(weed)
    elapsed = time.perf_counter() - started
    _stop(r)
    return elapsed


def through_dagster(config: Path) -> float:
    defs = build_definitions(config)
    with tempfile.TemporaryDirectory() as home:
        instance = dg.DagsterInstance.local_temp(home, overrides={"telemetry": {"enabled": False}})
        started = time.perf_counter()
        result = defs.resolve_job_def("platform_up").execute_in_process(instance=instance)
        elapsed = time.perf_counter() - started
        instance.dispose()
    assert result.success
    _stop(defs.resources)
    return elapsed


def _stop(resources: dict) -> None:
    for key in SERVICE_KEYS:
        spec = resources[key].service_spec()
        resources[key].supervisor.stop(spec.name, spec.stop_signal, spec.stop_timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"direct": [], "dagster": []}
    with tempfile.TemporaryDirectory() as root:
        for round_number in range(args.rounds):
            for name, run in (("direct", direct), ("dagster", through_dagster)):
                directory = Path(root) / f"{name}-{round_number}"
                directory.mkdir()
                times[name].append(run(write_stack_config(directory)))
                print(f"round {round_number + 1} {name:8} {times[name][-1]:6.2f} s", flush=True)
    direct_median, dagster_median = statistics.median(times["direct"]), statistics.median(times["dagster"])
    print(f"\ncold platform, median of {args.rounds}: direct {direct_median:.2f} s, dagster {dagster_median:.2f} s")
    print(f"ratio dagster/direct: {dagster_median / direct_median:.2f}x (target <= 1.3x; whole platform <= 30 s)")


if __name__ == "__main__":
    main()
