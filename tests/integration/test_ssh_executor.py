"""The SSH executor against a real OpenSSH sshd on 127.0.0.1, and host preparation planned through it."""

from __future__ import annotations

import hashlib
import http.server
import platform
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_core.cluster.render import SEED_NETWORK
from platform_core.config.models import PlatformConfig
from platform_core.host.executor import (
    CommandResult,
    HostAccessError,
    HostCommandError,
    HostTimeoutError,
    LocalExecutor,
    PlanExecutor,
)
from platform_core.host.facts import host_facts, probe_egress
from platform_core.host.prepare import prepare_host
from platform_core.host.reach import executor_for
from platform_core.host.ssh import SshExecutor
from tests.sshd import Sshd, start_sshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def connect(server: Sshd, known_hosts: Path) -> SshExecutor:
    return SshExecutor(
        "127.0.0.1", user=server.user, port=server.port, key_path=str(server.client_key), known_hosts=known_hosts
    )


@pytest.fixture
def ssh(sshd: Sshd, tmp_path: Path) -> Iterator[SshExecutor]:
    executor = connect(sshd, tmp_path / "known_hosts")
    yield executor
    executor.close()


def k3s_cfg(server: Sshd, **host: object) -> PlatformConfig:
    ssh = {"address": "127.0.0.1", "ssh_user": server.user, "ssh_port": server.port, "ssh_key": str(server.client_key)}
    return PlatformConfig.model_validate({"target": "k3s", "host": ssh | host, "network": SEED_NETWORK})


def test_run_gives_stdout_stderr_rc_and_feeds_input(ssh: SshExecutor) -> None:
    result = ssh.run(["sh", "-c", 'echo "out $1"; echo err >&2; exit 3', "sh", "it's $HOME; `x`"])
    assert (result.rc, result.stdout, result.stderr) == (3, b"out it's $HOME; `x`\n", b"err\n")
    payload = bytes(range(256)) * 12_000  # 3 MB, past SSH's flow-control window
    assert ssh.run(["sha256sum"], input=payload).out.split()[0] == hashlib.sha256(payload).hexdigest()
    assert ssh.describe() == f"ssh {ssh.user}@127.0.0.1:{ssh.port}"


def test_large_stderr_before_stdout_does_not_deadlock(ssh: SshExecutor) -> None:
    result = ssh.run(["sh", "-c", "head -c 3000000 /dev/zero >&2; echo done"], timeout=20)
    assert (result.rc, result.out, len(result.stderr)) == (0, "done", 3_000_000)


def test_check_raises_one_line_with_command_rc_and_last_stderr_line(ssh: SshExecutor) -> None:
    with pytest.raises(HostCommandError) as err:
        ssh.run(["sh", "-c", "echo first >&2; echo 'disk full' >&2; exit 2"], check=True)
    message = str(err.value)
    assert message.endswith(f"failed with rc 2 on {ssh.describe()}: disk full") and "\n" not in message


def test_timeout_raises_and_kills_the_remote_command(ssh: SshExecutor) -> None:
    started = time.monotonic()
    with pytest.raises(HostTimeoutError, match=r"sleep 31\.25 timed out after 1s"):
        ssh.run(["sleep", "31.25"], timeout=1)
    assert time.monotonic() - started < 5
    assert ssh.run(["pgrep", "-f", "^sleep 31.25"]).rc == 1  # nothing left running on the host
    assert ssh.run(["true"]).ok  # the connection still works


def test_connection_is_reused(sshd: Sshd, tmp_path: Path) -> None:
    executor = connect(sshd, tmp_path / "known_hosts")
    before = sshd.log().count("Accepted publickey")
    for _ in range(5):
        executor.run(["true"])
    executor.close()
    time.sleep(0.2)  # sshd's log line may trail the session
    assert sshd.log().count("Accepted publickey") == before + 1


def test_write_and_read_file_round_trip_with_mode_and_no_op_on_equal(ssh: SshExecutor, tmp_path: Path) -> None:
    path = tmp_path / "etc" / "app" / "secret.conf"
    assert ssh.read_file(str(path)) is None
    assert ssh.write_file(str(path), b"token: abc\n", 0o600) is True
    assert path.read_bytes() == b"token: abc\n" and path.stat().st_mode & 0o777 == 0o600
    inode = path.stat().st_ino
    assert ssh.write_file(str(path), b"token: abc\n", 0o600) is False
    assert path.stat().st_ino == inode  # untouched, not rewritten
    assert ssh.write_file(str(path), b"token: abc\n", 0o640) is True and path.stat().st_mode & 0o777 == 0o640
    assert ssh.write_file(str(path), b"token: xyz\n", 0o600, sudo=True) is True
    assert ssh.read_file(str(path), sudo=True) == b"token: xyz\n"
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    with pytest.raises(HostCommandError, match="cat"):
        ssh.read_file(str(tmp_path))  # a directory is an error, not "missing"


def test_trust_on_first_use_then_refuse_a_changed_host_key(tmp_path: Path) -> None:
    server = start_sshd(tmp_path / "sshd")
    known_hosts = tmp_path / "state" / "known_hosts"
    try:
        first = connect(server, known_hosts)
        assert first.run(["true"]).ok
        first.close()
        assert known_hosts.stat().st_mode & 0o777 == 0o600
        recorded = known_hosts.read_text()
        assert recorded.startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 ")
        assert connect(server, known_hosts).run(["true"]).ok  # the trusted key is accepted again

        server.restart(new_host_key=True)
        with pytest.raises(HostAccessError) as err:
            connect(server, known_hosts).run(["true"])
        message = str(err.value)
        assert "host key changed" in message and str(known_hosts) in message and "\n" not in message
        assert known_hosts.read_text() == recorded  # the new key was not trusted
    finally:
        server.stop()


def test_unreachable_port_is_a_clear_error(tmp_path: Path) -> None:
    executor = SshExecutor("127.0.0.1", user="root", port=1, known_hosts=tmp_path / "known_hosts")
    with pytest.raises(
        HostAccessError,
        match=r"^ssh root@127\.0\.0\.1:1: cannot connect: .* \(check host\.address 127\.0\.0\.1 and "
        r"host\.ssh_port 1\)$",
    ) as err:
        executor.run(["true"])
    assert "\n" not in str(err.value)
    missing = SshExecutor("127.0.0.1", user="root", key_path=str(tmp_path / "nokey"), known_hosts=tmp_path / "kh")
    with pytest.raises(HostAccessError, match=r"^host\.ssh_key: .*nokey does not exist$"):
        missing.run(["true"])


def test_local_executor_runs_writes_and_times_out(tmp_path: Path) -> None:
    local = LocalExecutor()
    assert local.run(["sh", "-c", "cat; echo e >&2; exit 4"], input=b"in").stdout == b"in"
    assert local.run(["no-such-command-here"]).rc == 127
    path = tmp_path / "f"
    assert local.write_file(str(path), b"x", 0o600) and not local.write_file(str(path), b"x", 0o600)
    assert path.stat().st_mode & 0o777 == 0o600 and local.read_file(str(path)) == b"x"
    with pytest.raises(HostTimeoutError, match=r"^sleep 5 timed out after 0\.2s on local$"):
        local.run(["sleep", "5"], timeout=0.2)


def test_sudo_is_prefixed_only_for_a_non_root_ssh_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(
        SshExecutor, "_exec", lambda self, argv, *_: seen.append(argv) or CommandResult(argv, 0, b"", b"")
    )
    for user in ("deploy", "root"):
        SshExecutor("192.0.2.1", user=user, known_hosts=tmp_path / "kh").run(["systemctl", "restart", "k3s"], sudo=True)
    assert seen == [["sudo", "-n", "systemctl", "restart", "k3s"], ["systemctl", "restart", "k3s"]]


def test_executor_for_picks_local_or_ssh(sshd: Sshd, tmp_path: Path) -> None:
    cfg = k3s_cfg(sshd)
    chosen = executor_for(cfg, tmp_path)
    assert isinstance(chosen, SshExecutor) and chosen.describe() == f"ssh {sshd.user}@127.0.0.1:{sshd.port}"
    local = cfg.model_copy(update={"host": cfg.host.model_copy(update={"ssh_user": None})})
    assert isinstance(executor_for(local, tmp_path), LocalExecutor)


def test_host_preparation_plan_over_ssh_runs_real_probes_and_changes_nothing(sshd: Sshd, tmp_path: Path) -> None:
    would_write = [Path("/etc/modules-load.d/k3s.conf"), Path("/etc/sysctl.d/90-k3s.conf")]
    assert not any(path.exists() for path in would_write)
    packages = ["open-iscsi", "nfs-common", "bind9-dnsutils"]
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}\n", *packages], capture_output=True)
    packages_present = installed.stdout.decode().split("\n")[:3] == ["install ok installed"] * 3

    inner = executor_for(k3s_cfg(sshd), tmp_path)
    plan = PlanExecutor(inner)
    report = prepare_host(plan, k3s_cfg(sshd))
    assert report.os is not None and (report.os.id, report.os.family) == ("debian", "debian")
    steps = {step.name: step for step in report.steps}
    assert list(steps) == ["packages", "iscsid", "kernel modules", "sysctl"]
    if packages_present:
        assert steps["packages"].status == "already"
    else:
        assert steps["packages"].status == "would change"
        assert steps["packages"].planned == (
            "run (sudo): env DEBIAN_FRONTEND=noninteractive apt-get update -q",
            "run (sudo): env DEBIAN_FRONTEND=noninteractive apt-get install -y -q open-iscsi nfs-common bind9-dnsutils",
        )
    assert steps["kernel modules"].planned[0] == "write (sudo): /etc/modules-load.d/k3s.conf (21 bytes, mode 644)"
    assert report.summary().startswith("would change: ")
    assert not any(path.exists() for path in would_write)  # planned, not done
    assert plan.planned == [line for step in report.steps for line in step.planned]


class _Head(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_host_facts_and_egress_probe_from_the_host(ssh: SshExecutor) -> None:
    facts = host_facts(ssh, host_ip="10.43.100.94")
    assert (facts["os_id"], facts["os_family"], facts["arch"]) == ("debian", "debian", platform.machine())
    assert facts["host_ip_present"] is False and facts["k3s_version"] is None
    assert facts["memory_bytes"] > 1024**3 and facts["disk_free_bytes"] > 0
    if facts["addresses"]:  # a machine with only loopback has nothing to match
        own = facts["addresses"][0].split("/")[0]
        assert host_facts(ssh, host_ip=own)["host_ip_present"] is True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Head)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        up = f"http://127.0.0.1:{server.server_address[1]}/"
        assert probe_egress(ssh, [up]).mode == "online"
        report = probe_egress(ssh, [up, "http://127.0.0.1:1/"])
        assert report.mode == "airgap"
        assert report.reasons[0] == f"{up}: reachable (HTTP 200)"
        assert report.reasons[1].startswith("http://127.0.0.1:1/: unreachable (curl: (7)")
    finally:
        server.shutdown()
        server.server_close()
