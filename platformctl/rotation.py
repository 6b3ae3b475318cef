"""`platformctl rotate-credentials`: every generated credential replaced, the way back from a lost or stale
credentials file, and the answer to "rotate my passwords".

Postgres's superuser gets its new password through the server's local single-user mode (no password needed, only
the data directory and its OS user), so nothing depends on the lost one. Everything else follows from the new
file on the next `up`: role passwords that no longer work are reset by `postgres_databases` as the superuser,
SeaweedFS's identities file is rendered anew, and every service whose environment or files changed is restarted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from platform_core.config import PlatformConfig
from platform_core.secrets_record import flatten, read_record, write_record
from platform_core.services.postgres import SUPERUSER, PostgresResource, grant_path, postgres_binary, system_user
from platform_core.state import GENERATORS, StateDir, generate_secret


class RotationError(RuntimeError):
    """Rotation cannot go ahead; nothing was changed."""


def rotate(cfg: PlatformConfig, state: StateDir, config_path: Path) -> list[str]:
    """Replace every credential the stack has (in the file, or recorded beside its data); lines say what."""
    if cfg.target != "local":
        raise RotationError("rotate-credentials covers the local target; in k3s the platform's Secrets follow the file")
    old = _read(state.secrets_file)
    keys = sorted(set(flatten(old)) | set(read_record(state.credentials_record)))
    fresh: dict[str, dict[str, str]] = {}
    for key in keys:
        section, name = key.split("/", 1)
        fresh.setdefault(section, {})[name] = GENERATORS.get(section, generate_secret)()
    postgres = PostgresResource(config_path=str(config_path), state_dir=str(state.root))
    cluster = (postgres.pgdata / "PG_VERSION").exists()
    lines = []
    if cluster:
        spec = postgres.service_spec()
        postgres.supervisor.stop(spec.name, spec.stop_signal, spec.stop_timeout, on_purpose=False)
        lines.append("postgres: stopped for single-user mode (started again by up)")
    if state.secrets_file.exists():
        backup = state.secrets_file.with_name(f"credentials.{time.strftime('%Y%m%dT%H%M%S')}.json")
        shutil.copy2(state.secrets_file, backup)
        lines.append(f"state: the previous file is kept as {backup}")
    superuser = fresh.get("postgres", {}).get(SUPERUSER)
    if superuser and cluster:
        _set_superuser_password(postgres.pgdata, superuser)
        lines.append(f"postgres: new password for {SUPERUSER}, set through single-user mode")
    state.credentials.replace_all(fresh)
    state.credentials_record.unlink(missing_ok=True)
    write_record(state.credentials_record, flatten(fresh))
    lines.append(f"state: {len(keys)} new credentials in {state.secrets_file} (0600)")
    return lines


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise RotationError(f"{path} cannot be read ({type(err).__name__}); move it aside and run again") from None


def _set_superuser_password(pgdata: Path, password: str) -> None:
    """`postgres --single` on the stopped cluster, the statement on stdin (never on a command line)."""
    user = system_user()
    if user:  # the server user must reach pgdata through every parent, as when the server starts
        grant_path(pgdata)
    argv = [str(postgres_binary()), "--single", "-D", str(pgdata), "-c", "listen_addresses=", "postgres"]
    statement = f"ALTER ROLE {SUPERUSER} PASSWORD '{password}';\n"  # generated: letters and digits only
    done = subprocess.run(
        argv, input=statement.encode(), capture_output=True, timeout=120, user=user, check=False,
        cwd=pgdata, env={**os.environ, "PGDATA": str(pgdata)},
    )  # fmt: skip
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise RotationError(f"postgres single-user mode failed ({done.returncode}): {' '.join(tail)}")
