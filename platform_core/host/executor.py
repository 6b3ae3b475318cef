"""Running commands and writing files on the k3s host: here (local), over SSH (host/ssh.py), or as a plan.

Commands are argv lists, never shell strings built from user data: over SSH they are quoted with
``shlex.join``; the few constant ``sh -c`` scripts below take user data only as positional parameters.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

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


class CommandExecutor:
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


class LocalExecutor(CommandExecutor):
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
