"""The SeaweedFS launcher starts the volume server only once the master leads, and ends the service (both
processes) when either one exits. Stand-ins for the two weed processes: a master whose /cluster/status says it
leads after a delay, and a volume server that records when it started. The real pair runs in every stack."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.stacks import free_port_block

MASTER = textwrap.dedent(
    """
    import http.server, json, sys, time
    started = time.monotonic()
    lead_after = float(sys.argv[2])

    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"IsLeader": time.monotonic() - started >= lead_after}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    open(sys.argv[3], "w").write(str(time.time()))
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Status).serve_forever()
    """
)
VOLUME = "import sys, time; open(sys.argv[1], 'w').write(str(time.time())); time.sleep(float(sys.argv[2]))"


def launch(tmp_path: Path, lead_after: float, volume_lives: float) -> subprocess.Popen[bytes]:
    port = free_port_block(1)
    argv = [
        sys.executable,
        "-m",
        "platform_core.services.seaweedfs_launch",
        f"http://127.0.0.1:{port}/cluster/status",
        *(sys.executable, "-c", MASTER, str(port), str(lead_after), str(tmp_path / "master")),
        "--volume",
        *(sys.executable, "-c", VOLUME, str(tmp_path / "volume"), str(volume_lives)),
    ]
    return subprocess.Popen(argv, start_new_session=True)


def wait_for(path: Path, timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path.name} never started"
        time.sleep(0.05)
    return float(path.read_text())


def test_the_volume_server_starts_after_the_master_leads_and_either_exit_ends_both(tmp_path: Path) -> None:
    launcher = launch(tmp_path, lead_after=1.5, volume_lives=1.0)
    try:
        master_started = wait_for(tmp_path / "master")
        volume_started = wait_for(tmp_path / "volume")
        assert volume_started - master_started >= 1.5  # not before the master said it leads
        assert launcher.wait(timeout=20) == 1  # the volume server exited unasked: the service ends, master too
        assert not _group_alive(launcher.pid)
    finally:
        _kill_group(launcher)


def test_a_stop_signal_to_the_group_ends_the_launcher_once_its_processes_are_gone(tmp_path: Path) -> None:
    launcher = launch(tmp_path, lead_after=0.0, volume_lives=60.0)
    try:
        wait_for(tmp_path / "volume")
        os.killpg(launcher.pid, signal.SIGTERM)  # as the supervisor stops every service: its whole group
        assert launcher.wait(timeout=10) == 0  # asked to stop: an orderly end
        assert not _group_alive(launcher.pid)  # and nothing of the service is left
    finally:
        _kill_group(launcher)


def _group_alive(group: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


def _kill_group(launcher: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
