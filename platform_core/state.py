"""Layout of the state directory and the generated credentials that live in it.

Everything a stack owns sits under one directory (default `.platform/`): service data, logs, pid files,
the Dagster instance and a 0600 credentials file generated on first use. Nothing here is ever in git.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import string
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from platform_core.config import ConfigError, PlatformConfig, load_config
from platform_core.secrets_record import mismatch, read_record, write_record
from platform_core.settings import CLUSTER_SECRET_DIR, STATE_DIR_ENV, config_path, in_cluster, state_dir_override
from platform_core.state_checks import state_dir_problem

_ALPHABET = string.ascii_letters + string.digits


# Plan mode (`platformctl plan`): the state directory is read, never written. What a real run would write first
# (a credential that does not exist yet) is made up in memory for the plan and listed here instead.
@dataclass
class _Plan:
    writes: list[str]  # what a real run would have written
    made_up: dict[tuple[str, str, str], str]  # (file, section, name) -> a stand-in credential, stable in the plan


_PLAN: ContextVar[_Plan | None] = ContextVar("state_plan", default=None)


@contextmanager
def planning() -> Iterator[list[str]]:
    """Within this block nothing writes to a state directory; the yielded list names what would have been written."""
    plan = _Plan([], {})
    token = _PLAN.set(plan)
    try:
        yield plan.writes
    finally:
        _PLAN.reset(token)


def is_planning() -> bool:
    return _PLAN.get() is not None


def note_planned(line: str) -> None:
    plan = _PLAN.get()
    if plan is not None and line not in plan.writes:
        plan.writes.append(line)


def generate_secret(length: int = 32) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def generate_access_key() -> str:
    return "AK" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(18))


# How each section of the credentials file is generated (by first use, and by `platformctl rotate-credentials`).
GENERATORS: dict[str, Callable[[], str]] = {
    "postgres": generate_secret,
    "s3_access_keys": generate_access_key,
    "s3_secret_keys": lambda: generate_secret(40),
    "tokens": generate_secret,
    "mlflow_users": generate_secret,
}


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etc(self) -> Path:
        """Rendered service configuration (may hold secrets: 0700)."""
        return self.root / "etc"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def lineage(self) -> Path:
        """Each code location's published asset lineage (alerting/lineage.py)."""
        return self.root / "lineage"

    @property
    def scores(self) -> Path:
        """What approved model files predicted for tables they scored (ModelTracker.approved_predictions)."""
        return self.root / "cache" / "scores"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets" / "credentials.json"

    def ensure(self) -> StateDir:
        if is_planning():
            if not self.root.exists():
                note_planned(f"would create the state directory {self.root}")
            return self
        for path in (self.root, self.data, self.logs, self.run, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)
        for private in (self.etc, self.secrets_file.parent):
            private.mkdir(mode=0o700, parents=True, exist_ok=True)
            private.chmod(0o700)
        return self

    @property
    def credentials_record(self) -> Path:
        """Digests of the credentials the data was made with (secrets_record.py), beside the data."""
        return self.data / "credentials.sha256.json"

    @cached_property
    def credentials(self) -> Credentials:
        if in_cluster():  # the workstation's credentials, mounted read-only from the Secret it made
            return Credentials(CLUSTER_SECRET_DIR / "credentials.json", None, read_only=True)
        return Credentials(self.secrets_file, self.credentials_record)


class Credentials:
    """Passwords and S3 keys, generated once into a 0600 JSON file and reused on every later run."""

    def __init__(self, path: Path, record: Path | None = None, read_only: bool = False) -> None:
        self.path = path
        self.record = record  # where the digests of what was generated are kept (None: nowhere, in tests)
        self.read_only = read_only  # in the cluster: only the workstation generates credentials
        self._recorded: set[str] = set()  # keys known to be in the record

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        return data

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".credentials-")  # created 0600
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def replace_all(self, data: dict[str, dict[str, str]]) -> None:
        """Every credential at once (rotation): the file is replaced atomically, under the lock."""
        with self._locked():
            self._save(data)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Runs and sensors of both code locations create credentials concurrently: one writer at a time,
        so no generated password is ever overwritten by another process's stale copy."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def postgres_password(self, role: str) -> str:
        return self._get_or_create("postgres", role)

    def s3_keys(self, identity: str) -> tuple[str, str]:
        return self._get_or_create("s3_access_keys", identity), self._get_or_create("s3_secret_keys", identity)

    def mlflow_password(self, username: str) -> str:
        """The password of one of MLflow's users (platform_core.services.mlflow_auth names them)."""
        return self._get_or_create("mlflow_users", username)

    def token(self, name: str) -> str:
        """A generated secret of the platform's own (e.g. MetalLB's memberlist key, the data API's admin token)."""
        return self._get_or_create("tokens", name)

    def _get_or_create(self, section: str, name: str) -> str:
        make = GENERATORS[section]
        value = self._load().get(section, {}).get(name)
        if value is not None:
            self._remember(f"{section}/{name}", value, only_if_new=True)  # a stack from before the record
            return value
        plan = _PLAN.get()
        if plan is not None:
            note_planned(f"would generate the credential {section}/{name} in {self.path}")
            return plan.made_up.setdefault((str(self.path), section, name), make())
        if self.read_only:
            raise ConfigError(
                str(self.path), f"{section}/{name}", "not there; `platformctl up` on the workstation generates it"
            )
        with self._locked():
            data = self._load()  # re-read under the lock: another process may have just created it
            value = data.get(section, {}).get(name)
            if value is None:
                self._refuse_regenerating(f"{section}/{name}")
                value = make()
                data.setdefault(section, {})[name] = value
                self._save(data)
        self._remember(f"{section}/{name}", value)
        return value

    def _refuse_regenerating(self, key: str) -> None:
        """A credential the data was made with is never generated again: the file lost it (deleted while a
        long-running process, the watchdog say, was reading it). Only rotation replaces it."""
        if self.record is not None and key in read_record(self.record):
            problem = mismatch(self.record, self.path) or f"{key} is missing from {self.path}"
            raise ConfigError(str(self.path), key, problem)

    def _remember(self, key: str, value: str, only_if_new: bool = False) -> None:
        """Record the credential's digest beside the data it is about to make (never in a plan). A key seen
        recorded is not looked up again: credentials are read on every service call."""
        if self.record is None or _PLAN.get() is not None or (only_if_new and key in self._recorded):
            return
        if not (only_if_new and key in read_record(self.record)):
            with self._locked():  # one writer of the record too
                write_record(self.record, {key: value})
        self._recorded.add(key)


def resolve_state_dir(cfg: PlatformConfig, base: Path | None = None) -> StateDir:
    override = state_dir_override()
    if override is not None:
        return StateDir(override)
    root = Path(cfg.state_dir).expanduser()
    if not root.is_absolute():
        root = (base or Path.cwd()) / root
    return StateDir(root.resolve())


def load_platform(path: Path | None = None, allow_credential_mismatch: bool = False) -> tuple[PlatformConfig, StateDir]:
    """Config and state directory; by default as the environment chooses them (see settings.py). A state
    directory that cannot hold the stack's secrets safely, or whose credentials are not the ones its data was made
    with, is a one-line ``ConfigError`` before anything is written or started."""
    path = path or config_path()
    cfg = load_config(path)
    state = resolve_state_dir(cfg, base=path.parent)
    field = f"state_dir (or ${STATE_DIR_ENV})" if state_dir_override() else "state_dir"
    # Local data is locked to its credentials; in k3s an edited file is how a credential is rotated (the
    # Secrets follow it and the pods roll), so only the local target guards the pair.
    guarded = cfg.target == "local" and not allow_credential_mismatch
    problem = state_dir_problem(state.root) or (
        mismatch(state.credentials_record, state.secrets_file) if guarded else None
    )
    if problem:
        raise ConfigError(str(path), field, problem)
    return cfg, state
