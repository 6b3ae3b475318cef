"""A host address that answers, but not with SSH: one line naming host.address, not paramiko's traceback."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest

from platform_core.host.executor import HostAccessError
from platform_core.host.ssh import SshExecutor


def test_a_port_that_is_not_ssh_is_one_line_naming_the_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer_http() -> None:
        for _ in range(3):
            conn, _ = server.accept()
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=answer_http, daemon=True).start()
    port = server.getsockname()[1]
    executor = SshExecutor("127.0.0.1", user="root", port=port, known_hosts=tmp_path / "known_hosts", connect_timeout=3)
    with caplog.at_level(logging.DEBUG), pytest.raises(HostAccessError) as caught:
        executor.run(["true"])
    server.close()
    message = str(caught.value)
    assert "\n" not in message and "SSH protocol banner" in message
    assert f"host.address 127.0.0.1 and host.ssh_port {port}" in message
    assert not [r for r in caplog.records if r.name.startswith("paramiko") and r.levelno >= logging.ERROR]
