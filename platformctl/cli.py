"""`platformctl`: bring the local stack up (platform location, then ML location), tear it down, show status.

`up` materializes each code location's selections in this process (platformctl/materialize.py), into the
stack's Dagster instance (stored in the platform's Postgres), then starts Dagster's webserver and daemon, so the
UI shows those runs and the sensors run until `down`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from platform_core.config import ConfigError, PlatformConfig
from platform_core.redact import redact
from platform_core.settings import CONFIG_ENV, STATE_DIR_ENV, config_path
from platform_core.state import StateDir, load_platform
from platform_core.supervisor import Supervisor
from platformctl.materialize import Step, collector_paused, materialize

if TYPE_CHECKING:
    from dagster import DagsterInstance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="platformctl", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help=f"platform.yaml to use (env {CONFIG_ENV}; default ./platform.yaml)")
    parser.add_argument("--state-dir", help=f"state directory (env {STATE_DIR_ENV}; default from platform.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="materialize the platform location, then the ML location")
    sub.add_parser("down", help="stop every service (data stays in the state directory)")
    sub.add_parser("status", help="services, and any drift between platform.yaml and what runs")
    sub.add_parser("ui", help="where the Dagster UI of this stack answers (started by up)")
    passthrough = sub.add_parser(
        "dagster", help="a dagster command on this stack's instance, e.g. `platformctl dagster asset list -m ...`"
    )
    passthrough.add_argument("args", nargs=argparse.REMAINDER, help="the dagster command's own arguments")
    planned = sub.add_parser(
        "plan",
        help="what `up` would change in every asset of both locations, writing nothing "
        "(exit 0: nothing to do, 2: changes, 1: blocked or error)",
    )
    planned.add_argument("--select", help="comma-separated assets (default: all)")
    sub.add_parser(
        "rotate-credentials",
        help="new passwords, S3 keys and tokens for everything (also the way back from a lost credentials file), "
        "then `up` to roll the services",
    )
    sub.add_parser(
        "bundle", help="what k3s.offline_bundle_dir must hold for this config (air-gap: nothing fetched from outside)"
    )
    feed = sub.add_parser("ingest", help="feed one batch through the graph (fetch, validate, retrain, deploy)")
    feed.add_argument("day", type=int, help="the batch (partition) to ingest")
    args, extra = parser.parse_known_args(argv)  # `platformctl dagster --help` belongs to dagster
    if extra and args.command != "dagster":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.config:
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    if args.state_dir:
        os.environ[STATE_DIR_ENV] = str(Path(args.state_dir).resolve())
    try:
        # `down` stops by the pid records alone, so it also works while the credentials file is lost or stale
        cfg, state = load_platform(allow_credential_mismatch=args.command in ("rotate-credentials", "down"))
    except (ConfigError, FileNotFoundError) as err:
        print(f"platformctl: {err}", file=sys.stderr)
        return 1 if args.command == "plan" else 2  # plan's 2 means "changes to make"
    if args.command == "ingest" and not 0 <= args.day < cfg.ml.batches:  # refuse before any side effect
        print(f"platformctl: day {args.day} is outside ml.batches (0..{cfg.ml.batches - 1})", file=sys.stderr)
        return 2
    if args.command == "bundle":  # reads the config and the pins only
        from platform_core.cluster.bundle import bundle_listing

        print("\n".join(bundle_listing(cfg)))
        return 0
    if args.command == "plan":  # changes nothing, not even the state directory
        from platformctl.plan import PlanError, exit_code, plan

        try:
            lines = plan(cfg, state, config_path(), args.select.split(",") if args.select else None)
        except PlanError as err:
            print(f"platformctl plan: {err}", file=sys.stderr)
            return 1
        print("\n".join(lines))
        return exit_code(lines)
    state.ensure()
    if args.command == "ingest":
        return ingest(state, cfg, args.day)
    if args.command == "dagster":  # its environment carries the instance's password: no export by hand
        return run_dagster(state, cfg, [*extra, *args.args])
    if args.command == "rotate-credentials":
        return rotate_credentials(state, cfg)
    return {"up": up, "down": down, "status": status, "ui": ui}[args.command](state, cfg)


def run_dagster(state: StateDir, cfg: PlatformConfig, argv: list[str]) -> int:
    from platform_core.orchestrator.instance import in_postgres, storage_errors

    dagster = str(Path(sys.executable).parent / "dagster")
    try:
        env = dagster_env(state, cfg, config_path())
    except storage_errors() as err:
        print(f"platformctl: the Dagster instance cannot be reached: {redact(str(err))}", file=sys.stderr)
        return 1
    if cfg.target == "k3s" and in_postgres(state):  # the port-forward to the cluster's Postgres is this process's
        return subprocess.run([dagster, *argv], env=env).returncode
    os.execve(dagster, [dagster, *argv], env)


def dagster_env(state: StateDir, cfg: PlatformConfig, path: Path) -> dict[str, str]:
    """The environment every dagster command of the stack `path` describes runs with (the instance's password
    included)."""
    from platform_core.orchestrator.instance import instance_env

    return {**os.environ, **instance_env(cfg, state, path)}


STATEMENT_TIMEOUT_MS = 120_000  # a storage query of a step; the webserver's own default is 15 s

PLATFORM = Step("platform services", "platform_assets.definitions", "not group:orchestrator")
# last: the daemon's sensors judge a stack that is whole (the UI and the watchdog with it)
ORCHESTRATOR = Step(
    "orchestrator: Dagster's code servers, webserver and daemon (local: with the watchdog; k3s: in the cluster)",
    "platform_assets.definitions",
    "group:orchestrator",
)
_MODEL_ASSETS = ("ml_experiment", "features", "trained_model", "registered_model", "inference_service")
ML_MODEL = Step(
    "model: features, training, registry, serving",
    "ml_assets.definitions",
    " or ".join(f"key:{name}" for name in (*_MODEL_ASSETS, "deployed_model", "reference_profile")),
)


def ingest_step(day: int) -> Step:
    return Step(f"batch of day {day}", "ml_assets.definitions", "group:ml_data or key:drift_report", str(day))


# `up`'s ML in one run (each run costs ~0.2 s of Dagster's own): the first batch, the model on it, and the batch's
# drift report against that model, which its dependency on reference_profile orders after the model. A batch that
# fails stops what depends on it (features to the report); the experiment and the inference service still run.
# (`ingest` reports a new batch's drift against the champion before it retrains: its report runs with the batch.)
FIRST_DAY = Step(
    "first batch, model (features, training, registry, serving) and the batch's drift report",
    "ml_assets.definitions",
    f"group:ml_data or {ML_MODEL.selection} or key:drift_report",
    "0",
)
UP_STEPS = (PLATFORM, FIRST_DAY, ORCHESTRATOR)


def up(state: StateDir, cfg: PlatformConfig) -> int:
    """The platform, then the first batch, the model on it, and the batch's drift report against that model."""
    code = run_steps(state, cfg, "up", list(UP_STEPS))
    if code == 0 and cfg.target == "local":
        _print_where(state, cfg)
    elif code == 0:
        _, ui_line = _cluster_ui_line(state)
        print(ui_line)
    return code


def ingest(state: StateDir, cfg: PlatformConfig, day: int) -> int:
    """Feed one more batch through the graph: fetch, validate, drift-test against the serving champion, retrain,
    promote only if better, deploy."""
    return run_steps(state, cfg, f"ingest-day{day}", [ingest_step(day), ML_MODEL])


def rotate_credentials(state: StateDir, cfg: PlatformConfig) -> int:
    from platformctl.rotation import RotationError, rotate

    try:
        lines = rotate(cfg, state, config_path())
    except RotationError as err:
        print(f"platformctl rotate-credentials: {err}", file=sys.stderr)
        return 1
    print("\n".join(lines), flush=True)
    return up(state, cfg)  # every service whose credentials changed restarts; role passwords are reset


def run_steps(state: StateDir, cfg: PlatformConfig, command: str, steps: list[Step]) -> int:
    # What the command imports and loads before its first run (Dagster, the storage, the definitions: ~1M objects)
    # lives until it ends: the cyclic collector scanning it all as it arrives was ~0.25 s of a no-op `up`. Paused
    # until the first run (materialize freezes what is loaded, then resumes it), as it was after, in any case.
    with collector_paused():
        return _run_steps(state, cfg, command, steps)


def _run_steps(state: StateDir, cfg: PlatformConfig, command: str, steps: list[Step]) -> int:
    from platform_core.orchestrator.instance import (
        in_cluster_instance,
        in_postgres,
        instance_env,
        open_instance,
        storage_errors,
    )

    if not _bootstrap(state, cfg, restarts_orchestrator=ORCHESTRATOR in steps):
        return 1
    with contextlib.ExitStack() as stack:
        try:
            os.environ.update(instance_env(cfg, state, config_path()))  # the instance's password, for its storage
            instance = stack.enter_context(open_instance(cfg, state))  # every step's run goes into this one
            if cfg.target == "local":
                # one open connection per storage for the whole command, as Dagster's webserver holds them: by
                # default every event opened its own (~900 connections of ~4 ms in a no-op `up`). Not through the
                # k3s port-forward, where a dropped tunnel would fail the next event rather than reconnect
                instance.optimize_for_webserver(
                    statement_timeout=STATEMENT_TIMEOUT_MS, pool_recycle=3600, max_overflow=2
                )
        except storage_errors() as err:
            print(f"platformctl: the Dagster instance cannot be opened: {redact(str(err))}", file=sys.stderr)
            return 1
        for number, step in enumerate(steps, start=1):
            if not _run_step(instance, state.logs / f"{command}-{number}-{step.location.split('.')[0]}.log", step):
                return 1
    if cfg.target == "k3s" and in_cluster_instance(cfg, state) and not in_postgres(state):
        return 0 if _bootstrap(state, cfg, restarts_orchestrator=False) else 1  # this command deployed Dagster
    return 0


def _bootstrap(state: StateDir, cfg: PlatformConfig, restarts_orchestrator: bool) -> bool:
    from platform_core.orchestrator.bootstrap import BootstrapError, bootstrap_instance

    try:
        for line in bootstrap_instance(cfg, state, config_path(), restarts_orchestrator=restarts_orchestrator):
            print(f"==> {line}", flush=True)
    except BootstrapError as err:
        print(f"platformctl: {err}", file=sys.stderr)
        return False
    return True


def _run_step(instance: DagsterInstance, log: Path, step: Step) -> bool:
    from platform_core.runs import report_lines, run_report

    started = time.monotonic()
    print(f"==> {step.title} ({step.location}; log: {log})", flush=True)
    try:
        ran = materialize(instance, step, log)
    except Exception as err:  # the definitions did not load, or the selection names nothing: one line, not a trace
        with log.open("a") as handle:
            traceback.print_exc(file=handle)
        print(f"platformctl: {step.title} failed: {redact(f'{type(err).__name__}: {err}')}", file=sys.stderr)
        print(f"platformctl: the whole log: {log}", file=sys.stderr)
        return False
    print(f"    {'ok' if ran.success else 'FAILED'} in {time.monotonic() - started:.1f}s", flush=True)
    report = run_report(instance, ran.run_id)  # the run itself: no listing of the instance's runs to find it
    for line in report_lines(report):
        print(f"    {line}")
    if not ran.success:
        cause = next(iter(report.failures.values()), None)
        print(f"platformctl: {step.title} failed: {cause or redact(last_error_line(log))}", file=sys.stderr)
        print(f"platformctl: the whole log: {log}", file=sys.stderr)
    return ran.success


def last_error_line(log: Path) -> str:
    """The line a failed command ended on: the exception's own line, below any traceback (whose lines indent)."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    unindented = [line for line in lines if not line[0].isspace()]
    return (unindented or lines or ["no output"])[-1]


def _print_where(state: StateDir, cfg: PlatformConfig) -> None:
    services = cfg.services
    print(f"""
The platform is up. State directory: {state.root}
  MLflow UI:        http://127.0.0.1:{services.mlflow.port}   (user reader: mlflow_users in {state.secrets_file.name})
  S3 endpoint:      http://127.0.0.1:{services.seaweedfs.s3_port}  (credentials: {state.secrets_file})
  Postgres:         127.0.0.1:{services.postgres.port}  (passwords: {state.secrets_file})
  Dagster UI:       http://127.0.0.1:{services.dagster.webserver_port}   (sensors and schedules run until make down)
  Inference API:    http://127.0.0.1:{services.inference.port}   (a page to try it at /, the API at /docs)
  Alerts log:       {state.root / cfg.alerts.log_file}
  Stop everything:  make down   (data stays; `make up` brings it back)""")


def _services(state: StateDir, cfg: PlatformConfig) -> dict:
    """Every supervised service's resource, dependents first (the order `down` stops them in)."""
    from ml_assets.resources import build_ml_resources

    resources = build_ml_resources(cfg, state, config_path())
    keys = ("inference_resource", "data_api_resource", "mlflow_resource", "seaweedfs_resource", "postgres_resource")
    return {key: resources[key] for key in keys}


def down(state: StateDir, cfg: PlatformConfig) -> int:
    from platform_core.catalog import SERVICE_ASSETS

    supervisor = Supervisor(state.run, state.logs)
    for name in reversed(SERVICE_ASSETS):  # dependents first
        was_running = supervisor.stop_recorded(name)
        print(f"{name}: {'stopped' if was_running else 'was not running'}", flush=True)
    return 0


def status(state: StateDir, cfg: PlatformConfig) -> int:
    if cfg.target != "local":  # the services are the cluster's (their Applications: `platformctl plan`)
        beating, line = sensors_status(state, cfg)
        _, ui_line = _cluster_ui_line(state)
        print(f"{ui_line}\n{line}")
        return 0 if beating else 1
    from platform_core.alerting.service_drift import local_findings, service_drift
    from platform_core.orchestrator.services import DagsterResource

    services = _services(state, cfg)
    dagster = DagsterResource(config_path=str(config_path()), state_dir=str(state.root))
    specs = [resource.service_spec() for resource in reversed(services.values())]
    specs += dagster.specs()
    supervisor = Supervisor(state.run, state.logs)
    for spec in specs:
        current = supervisor.status(spec.name)
        shown = f"running (pid {current.pid})" if current.running else ("down" if current.deployed else "stopped")
        print(f"{spec.name:17} {shown}")
    findings = local_findings(
        services["postgres_resource"], services["seaweedfs_resource"], services["mlflow_resource"], dagster
    )
    for key in ("data_api_resource", "inference_resource"):
        findings += service_drift(supervisor, services[key].service_spec())
    for finding in findings:
        print(f"DRIFT {finding.subject}: {finding.message} [{finding.remedy}]")
    print(sensors_status(state, cfg)[1])
    return 1 if findings else 0


def sensors_status(state: StateDir, cfg: PlatformConfig) -> tuple[bool, str]:
    """Who watches the watcher: whether the daemon that evaluates every alerting sensor beats, from its heartbeats
    (in the k3s target, the cluster's daemon, read from the cluster's instance), and the line saying so."""
    from platform_core.orchestrator.services import CLUSTER_DAEMONS, WATCHED_DAEMONS, heartbeat_ages
    from platform_core.runs import daemon_line, recorded_instance

    with recorded_instance(cfg, state) as instance:
        beats = {n: b.timestamp for n, b in instance.get_daemon_heartbeats().items()} if instance else None
    now, watched = time.time(), CLUSTER_DAEMONS if cfg.target == "k3s" else WATCHED_DAEMONS
    ages, stale = heartbeat_ages(beats or {}, now, watched)
    return bool(ages) and not stale, daemon_line(beats, now, watched)  # the line and the exit code agree


def _cluster_ui_line(state: StateDir) -> tuple[bool, str]:
    """k3s: (deployed, where the in-cluster webserver answers), as its asset recorded it."""
    from platform_core.resource import recorded_endpoint

    try:
        found = recorded_endpoint(state, "dagster")
    except RuntimeError:
        return False, "Dagster UI: not deployed in the cluster yet; `make up` deploys it"
    if "service" in found:
        from platform_core.cluster.port_forward import kubectl_command

        command = kubectl_command(found["namespace"], found["service"], int(found["port"]))
        return True, f"Dagster UI (in the cluster, off the LAN): `{command}`, then http://127.0.0.1:{found['port']}"
    return True, f"Dagster UI: http://{found['host']}:{found['port']}"


def ui(state: StateDir, cfg: PlatformConfig) -> int:
    """Where the UI answers: the webserver is a service of the stack (`up` starts it), so nothing is opened here."""
    if cfg.target != "local":
        deployed, line = _cluster_ui_line(state)
        print(line, file=sys.stdout if deployed else sys.stderr)
        return 0 if deployed else 1
    url = f"http://127.0.0.1:{cfg.services.dagster.webserver_port}"
    if Supervisor(state.run, state.logs).status("dagster_webserver").running:
        print(f"Dagster UI: {url}")
        return 0
    print(f"Dagster UI: not running; `make up` starts it at {url}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
