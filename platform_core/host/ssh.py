"""The host over SSH: one reused paramiko connection, key auth only, trust-on-first-use host keys. Its own
module so that paramiko (and its import chain) loads only where a host is reached over SSH."""

from __future__ import annotations

import logging
import os
import shlex
import threading
import time
from pathlib import Path

import paramiko

from platform_core.host.executor import (
    CommandExecutor,
    CommandResult,
    HostAccessError,
    HostTimeoutError,
)
from platform_core.state import is_planning, note_planned


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


class SshExecutor(CommandExecutor):
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
