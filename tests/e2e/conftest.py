"""One stack for the whole e2e session, brought up by the README's main command in the first test, and the
helpers every e2e module reads it with."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from platform_core.orchestrator.instance import open_instance
from platform_core.runs import AUTOMATION_TAGS, RunReport, run_report
from platform_core.state import load_platform
from tests.stacks import write_stack_config
from tests.webhook import Receiver

WEBHOOK_PASSWORD = "Hook-Passw0rd-e2e"
WEBHOOK_TOKEN = "xoxb4e2eToken0123456789abcDEF"
LEGACY_ASSET = "made_before_the_instance_moved_to_postgres"


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """The webhook the stack's alerts are posted to."""
    hook = Receiver().start()
    yield hook
    hook.stop()


@pytest.fixture(scope="session")
def stack_config(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Path]:
    # A webhook URL that is itself a credential (userinfo and a token), as Slack's and most receivers' are.
    hook = receiver.url.replace("http://", f"http://alerts:{WEBHOOK_PASSWORD}@") + f"?token={WEBHOOK_TOKEN}"
    alerts = {"webhook_url": hook, "log_file": "alerts.jsonl", "retries": 1, "backoff_seconds": 0.1}
    config = write_stack_config(tmp_path_factory.mktemp("e2e"), alerts=alerts)
    _seed_sqlite_instance(config.parent / "state" / "dagster_home")
    yield config
    subprocess.run([sys.executable, "-m", "platformctl.cli", "--config", str(config), "down"], timeout=180, check=False)


def _seed_sqlite_instance(home: Path) -> None:
    """A state directory from before the instance moved to Postgres: sqlite, with one run in its history."""
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    @dg.asset(name=LEGACY_ASSET)
    def legacy() -> None:
        return None

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize([legacy], instance=instance).success


@contextmanager
def stack_instance(config: Path) -> Iterator[dg.DagsterInstance]:
    cfg, state = load_platform(config)
    with open_instance(cfg, state) as instance:
        yield instance


def command_runs(instance: dg.DagsterInstance, count: int) -> list[RunReport]:
    """The newest `count` runs that commands started (not the daemon's sensors or schedules), oldest first."""
    runs = [run for run in instance.get_runs(limit=count + 50) if not AUTOMATION_TAGS & run.tags.keys()]
    return [run_report(instance, run.run_id) for run in reversed(runs[:count])]


def platformctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "platformctl.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def wait_for(what: str, found: Callable[[], object], timeout: float, every: float = 2.0) -> object:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(every)
    raise AssertionError(f"no {what} within {timeout:.0f}s")
