"""Running commands and writing files on the k3s host: here (local), over SSH (paramiko), or as a plan.

Commands are argv lists, never shell strings built from user data: over SSH they are quoted with
``shlex.join``; the few constant ``sh -c`` scripts below take user data only as positional parameters.
"""

from __future__ import annotations

import getpass
import hashlib
import ipaddress
import logging
import os
import shlex
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import paramiko

from platform_core.config.models import PlatformConfig
from platform_core.state import is_planning, note_planned

# Atomic write: a private temp file beside the target, then chmod and rename; $1..$4 = tmp, mode, path, dir.
_WRITE_SCRIPT = 'umask 077 && mkdir -p -- "$4" && cat > "$1" && chmod "$2" "$1" && mv -f -- "$1" "$3"'
# rc 3 = no such file, so a missing file is told apart from an unreadable one.
_READ_SCRIPT = 'if [ -e "$1" ]; then exec cat -- "$1"; else exit 3; fi'
_STATE_SCRIPT = 'if [ -e "$1" ]; then sha256sum -- "$1" && exec stat -c %a -- "$1"; else exit 3; fi'
_MISSING_RC = 3


class HostError(RuntimeError):
    """A host problem as one line (connection, host key, command failure)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class HostCommandError(HostError):
    """A command that failed: the command, its rc and the last line of its stderr."""

    def __init__(self, result: CommandResult, where: str) -> None:
        self.result = result
        lines = result.stderr.decode(errors="replace").strip().splitlines() or ["(no stderr)"]
        super().__init__(f"{shlex.join(result.argv)} failed with rc {result.rc} on {where}: {lines[-1]}")


class HostTimeoutError(HostError):
    """A command still running after its timeout (it was killed)."""


class HostAccessError(HostError):
    """The host cannot be reached, refuses our key, or shows a changed host key."""


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def out(self) -> str:
        """stdout as text, stripped."""
        return self.stdout.decode(errors="replace").strip()


@dataclass(frozen=True)
class FileState:
    sha256: str
    mode: int  # permission bits, e.g. 0o644


@runtime_checkable
class Executor(Protocol):
    """Runs on the host. ``run``/``write_file`` change things; ``probe``/``read_file``/``file_state`` only look."""

    def run(
        self,
        argv: list[str],
        *,
        sudo: bool = False,
        input: bytes | None = None,
        timeout: float = 120,
        check: bool = False,
    ) -> CommandResult: ...

    def probe(
        self, argv: list[str], *, sudo: bool = False, timeout: float = 60, check: bool = False
    ) -> CommandResult: ...

    def read_file(self, path: str, *, sudo: bool = False) -> bytes | None: ...

    def file_state(self, path: str, *, sudo: bool = False) -> FileState | None: ...

    def write_file(self, path: str, data: bytes, mode: int = 0o644, *, sudo: bool = False) -> bool: ...

    def describe(self) -> str: ...


class _CommandExecutor:
    """Everything but how one argv runs: probes, checks and file access are built on ``_exec``."""

    def _exec(self, argv: list[str], input: bytes | None, timeout: float) -> CommandResult:
        raise NotImplementedError

    def _is_root(self) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def run(
        self,
        argv: list[str],
        *,
        sudo: bool = False,
        input: bytes | None = None,
        timeout: float = 120,
        check: bool = False,
    ) -> CommandResult:
        if not argv:
            raise ValueError("empty command")
        full = ["sudo", "-n", *argv] if sudo and not self._is_root() else list(argv)
        result = self._exec(full, input, timeout)
        result = CommandResult(list(argv), result.rc, result.stdout, result.stderr)
        if check and not result.ok:
            raise HostCommandError(result, self.describe())
        return result

    def probe(self, argv: list[str], *, sudo: bool = False, timeout: float = 60, check: bool = False) -> CommandResult:
        return self.run(argv, sudo=sudo, timeout=timeout, check=check)

    def read_file(self, path: str, *, sudo: bool = False) -> bytes | None:
        result = self.probe(["sh", "-c", _READ_SCRIPT, "sh", path], sudo=sudo)
        if result.rc == _MISSING_RC:
            return None
        if not result.ok:
            raise HostCommandError(CommandResult(["cat", path], result.rc, b"", result.stderr), self.describe())
        return result.stdout

    def file_state(self, path: str, *, sudo: bool = False) -> FileState | None:
        result = self.probe(["sh", "-c", _STATE_SCRIPT, "sh", path], sudo=sudo)
        if result.rc == _MISSING_RC:
            return None
        if not result.ok:
            raise HostCommandError(CommandResult(["sha256sum", path], result.rc, b"", result.stderr), self.describe())
        digest_line, mode = result.out.splitlines()
        return FileState(digest_line.split()[0], int(mode, 8))

    def write_file(self, path: str, data: bytes, mode: int = 0o644, *, sudo: bool = False) -> bool:
        """Atomically replace ``path`` unless it already holds ``data``; a wrong mode alone is fixed in place."""
        state = self.file_state(path, sudo=sudo)
        if state is not None and state.sha256 == hashlib.sha256(data).hexdigest():
            if state.mode == mode:
                return False
            self.run(["chmod", f"{mode:o}", path], sudo=sudo, check=True)
            return True
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        script = ["sh", "-c", _WRITE_SCRIPT, "sh", tmp, f"{mode:o}", path, os.path.dirname(path) or "."]
        result = self.run(script, sudo=sudo, input=data, timeout=max(120, len(data) / 1e6))
        if not result.ok:
            raise HostCommandError(CommandResult(["write", path], result.rc, b"", result.stderr), self.describe())
        return True


class LocalExecutor(_CommandExecutor):
    """This machine, through subprocess (no shell)."""

    def _is_root(self) -> bool:
        return os.geteuid() == 0

    def describe(self) -> str:
        return "local"

    def _exec(self, argv: list[str], input: bytes | None, timeout: float) -> CommandResult:
        try:
            done = subprocess.run(argv, input=input or b"", capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise HostTimeoutError(f"{shlex.join(argv)} timed out after {timeout:g}s on local") from None
        except FileNotFoundError:
            return CommandResult(argv, 127, b"", f"{argv[0]}: command not found".encode())
        return CommandResult(argv, done.returncode, done.stdout, done.stderr)


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Record an unknown host's key in our own known_hosts (0600); paramiko refuses a changed one."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        keys = client.get_host_keys()
        keys.add(hostname, key.get_name(), key)
        if is_planning():  # trusted for this plan only; a real run records it
            note_planned(f"would trust {hostname}'s {key.get_name()} host key in {self.known_hosts}")
            return
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.known_hosts.with_name(self.known_hosts.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            for name, entries in keys.items():
                for entry in entries.values():
                    handle.write(f"{name} {entry.get_name()} {entry.get_base64()}\n")
        os.replace(tmp, self.known_hosts)


class SshExecutor(_CommandExecutor):
    """A host over SSH: one reused paramiko connection, key auth only, trust-on-first-use host keys."""

    def __init__(
        self,
        address: str,
        *,
        user: str,
        port: int = 22,
        key_path: str | None = None,
        known_hosts: Path,
        connect_timeout: float = 10,
    ) -> None:
        self.address, self.user, self.port = address, user, port
        self.key_path = os.path.expanduser(key_path) if key_path else None
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        # paramiko's transport thread logs a failed handshake as a traceback, one ERROR record per line (104 lines
        # for a port that is not SSH); the HostAccessError below says it in one.
        logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)

    def describe(self) -> str:
        return f"ssh {self.user}@{self.address}:{self.port}"

    def _is_root(self) -> bool:
        return self.user == "root"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _connect(self) -> paramiko.SSHClient:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if self._client is not None and transport is not None and transport.is_active():
                return self._client
            self.close()
            self._client = self._new_client()
            return self._client

    def _new_client(self) -> paramiko.SSHClient:
        if self.key_path and not os.path.isfile(self.key_path):
            raise HostAccessError(f"host.ssh_key: {self.key_path} does not exist")
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(_TrustOnFirstUse(self.known_hosts))
        where = self.describe()
        try:
            client.connect(
                self.address,
                port=self.port,
                username=self.user,
                key_filename=self.key_path,
                look_for_keys=self.key_path is None,
                allow_agent=True,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except paramiko.BadHostKeyException as err:
            client.close()
            raise HostAccessError(
                f"{where}: host key changed ({err.key.fingerprint} is not the one "
                f"trusted in {self.known_hosts}); if the host was rebuilt, delete its line there"
            ) from None
        except paramiko.AuthenticationException as err:
            client.close()
            key = self.key_path or "the agent's and default keys"
            raise HostAccessError(f"{where}: authentication failed with {key}: {err}") from None
        except (OSError, paramiko.SSHException) as err:
            client.close()
            fields = f"check host.address {self.address} and host.ssh_port {self.port}"
            raise HostAccessError(f"{where}: cannot connect: {err} ({fields})") from None
        return client

    def _exec(self, argv: list[str], input: bytes | None, timeout: float) -> CommandResult:
        transport = self._connect().get_transport()
        assert transport is not None
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            # `timeout` kills the remote command too; the channel timeout is only a backstop for a dead link.
            channel.settimeout(timeout + 15)
            channel.exec_command(shlex.join(["timeout", "-k", "5", f"{timeout:g}", *argv]))
        except (OSError, paramiko.SSHException) as err:
            self.close()  # reconnect on the next call
            raise HostAccessError(f"{self.describe()}: connection lost: {err}") from None
        errs: list[bytes] = []
        reader = threading.Thread(target=lambda: errs.append(_drain(channel.makefile_stderr("rb"))), daemon=True)
        reader.start()
        started = time.monotonic()
        try:
            if input:
                channel.sendall(input)
            channel.shutdown_write()
            out = _drain(channel.makefile("rb"))
            rc = channel.exit_status if channel.status_event.wait(15) else 124
        finally:
            reader.join(timeout=5)
            channel.close()
        if rc == 124 and time.monotonic() - started >= timeout:
            raise HostTimeoutError(f"{shlex.join(argv)} timed out after {timeout:g}s on {self.describe()}")
        return CommandResult(argv, rc, out, b"".join(errs))


def _drain(stream: paramiko.ChannelFile) -> bytes:
    try:
        return stream.read()
    except TimeoutError:  # a silent, dead link: the exit status wait below decides
        return b""


@dataclass
class PlanExecutor:
    """Plan mode: probes and reads go to ``inner`` for real; every change is recorded in ``planned``, not done."""

    inner: Executor
    planned: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"plan on {self.inner.describe()}"

    def run(
        self,
        argv: list[str],
        *,
        sudo: bool = False,
        input: bytes | None = None,
        timeout: float = 120,
        check: bool = False,
    ) -> CommandResult:
        fed = f" (stdin {len(input)} bytes)" if input else ""
        self.planned.append(f"run{' (sudo)' if sudo else ''}: {shlex.join(argv)}{fed}")
        return CommandResult(list(argv), 0, b"", b"")

    def probe(self, argv: list[str], *, sudo: bool = False, timeout: float = 60, check: bool = False) -> CommandResult:
        return self.inner.probe(argv, sudo=sudo, timeout=timeout, check=check)

    def read_file(self, path: str, *, sudo: bool = False) -> bytes | None:
        return self.inner.read_file(path, sudo=sudo)

    def file_state(self, path: str, *, sudo: bool = False) -> FileState | None:
        return self.inner.file_state(path, sudo=sudo)

    def write_file(self, path: str, data: bytes, mode: int = 0o644, *, sudo: bool = False) -> bool:
        if self.inner.file_state(path, sudo=sudo) == FileState(hashlib.sha256(data).hexdigest(), mode):
            return False
        # Size and mode only: file contents may be secret.
        self.planned.append(f"write{' (sudo)' if sudo else ''}: {path} ({len(data)} bytes, mode {mode:o})")
        return True


def _is_local(address: str) -> bool:
    try:
        return address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def executor_for(cfg: PlatformConfig, state_dir: Path) -> Executor:
    """Local when the host is this machine and no SSH user is set; otherwise SSH (TOFU in state_dir/known_hosts)."""
    host = cfg.host
    if _is_local(host.address) and not host.ssh_user:
        return LocalExecutor()
    return SshExecutor(
        host.address,
        user=host.ssh_user or getpass.getuser(),
        port=host.ssh_port,
        key_path=host.ssh_key,
        known_hosts=state_dir / "known_hosts",
    )
