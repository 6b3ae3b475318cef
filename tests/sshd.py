"""A real OpenSSH server on 127.0.0.1 for the SSH executor tests: fresh host and client keys, stopped by PID."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@dataclass
class Sshd:
    """One sshd process; ``restart(new_host_key=True)`` simulates a rebuilt host."""

    directory: Path
    port: int
    user: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_key(self) -> Path:
        return self.directory / "client_key"

    @property
    def host_key(self) -> Path:
        return self.directory / "host_key"

    def start(self) -> None:
        if not SSHD.exists():  # `make test` installs it (scripts/system-packages); CI fails this skip
            pytest.skip(f"{SSHD} is missing (apt-get install openssh-server)")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        config = self.directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
                    f"PidFile {self.directory / 'sshd.pid'}",
                    "PermitRootLogin yes",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    f"AllowUsers {self.user}",
                    "",
                ]
            )
        )
        log = open(self.directory / "sshd.log", "ab")  # noqa: SIM115 - held by the child process
        self.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        log.close()
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on 127.0.0.1:{self.port} within 10 s: {self.log()}")

    def log(self) -> str:
        return (self.directory / "sshd.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, *, new_host_key: bool) -> None:
        self.stop()
        if new_host_key:
            _keygen(self.host_key)
        self.start()


def start_sshd(directory: Path) -> Sshd:
    """Keys in ``directory``, the client key authorized for the current user, sshd listening."""
    directory.mkdir(parents=True, exist_ok=True)
    server = Sshd(directory, _free_port(), getpass.getuser())
    _keygen(server.host_key)
    _keygen(server.client_key)
    (directory / "authorized_keys").write_bytes(server.client_key.with_suffix(".pub").read_bytes())
    server.start()
    return server
