"""Processes by pid, never by name: is this still the process we started, signal its group, wait for it, its
tree, and who listens on a port. The supervisor's ground floor."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil


def is_same_process(pid: int, create_time: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_live(pid: int) -> bool:
    """A zombie (a dead leader its parent has not reaped yet) is as gone as an exited process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the service leads its own session, so its group id is its pid


def wait_gone(pid: int, timeout: float) -> bool:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    try:
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        return False
    return True


def name_of(pid: int | None) -> str:
    try:
        return psutil.Process(pid).name() if pid else "an unknown process"
    except psutil.Error:
        return "a process that has exited"


def pid_tree(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return []


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL what is still alive of ``procs`` (psutil checks each one's start time: a recycled pid is spared)."""
    alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


def ports_in_use(ports: tuple[int, ...]) -> dict[int, int | None]:
    """Listening TCP ports among `ports`, each with its owning pid where the kernel tells us."""
    wanted = set(ports)
    busy: dict[int, int | None] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in wanted:
            busy[conn.laddr.port] = conn.pid
    return busy


# Forks the service and exits: the service is nobody's child (init, or the nearest subreaper, adopts it), like a
# systemd unit. A service started by a long-lived process (the watchdog, a run of the daemon) is then neither
# its zombie when it dies nor part of its process tree when that process is stopped.
_DETACH = """
import os, pwd, signal, sys
fd, user, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
pid = os.fork()
if pid:
    os.write(fd, str(pid).encode())
    os._exit(0)
os.close(fd)
os.setsid()  # its own session and process group, led by itself: stopped by group, never by name
if user:  # Postgres refuses to run as root: drop to its user here, not in the launcher (Python may be root-only)
    entry = pwd.getpwnam(user)
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
for ignored in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these at start; the service must not inherit it
    signal.signal(ignored, signal.SIG_DFL)
os.execvp(argv[0], argv)
"""


def spawn_detached(
    argv: tuple[str, ...], env: dict[str, str], cwd: Path | None, run_as: str | None, log: IO[bytes]
) -> int:
    """Start `argv` as nobody's child, leading its own session, output to `log`; its pid."""
    read_end, write_end = os.pipe()
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-c", _DETACH, str(write_end), run_as or "", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        write_end = -1
        pid = os.read(read_end, 32)
        launcher.wait(timeout=30)
    finally:
        os.close(read_end)
        if write_end != -1:
            os.close(write_end)
    if not pid:
        raise OSError(f"{argv[0]} could not be started (the launcher exited with {launcher.returncode})")
    return int(pid)


def wait_reaped(pid: int | None, created: float, timeout: float) -> None:
    """A service is nobody's child, so a leader that died stays a zombie until init reaps it (a container's init
    may take a second or two). Postgres refuses to start while the pid in its postmaster.pid exists at all."""
    deadline = time.monotonic() + timeout
    while pid is not None and time.monotonic() < deadline:
        try:
            if abs(psutil.Process(pid).create_time() - created) >= 0.01:
                return  # the pid was recycled: ours is long gone
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)


def kill_group_orphans(leader: int | None) -> bool:
    """Kill what is left of a service whose leader died (mlflow's uvicorn child, say); True if any.

    Linux never hands out a PID still used as a process group id, so while any member of the recorded group
    lives, no unrelated process can hold the recorded pid: when that pid is taken, there is nothing of ours.
    """
    members = group_orphans(leader)
    kill_all(members)
    return bool(members)


def group_orphans(leader: int | None) -> list[psutil.Process]:
    """The live members of the process group `leader` led, when the leader is gone (see `kill_group_orphans`)."""
    if leader is None or is_live(leader):
        return []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(proc.pid) == leader and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members
