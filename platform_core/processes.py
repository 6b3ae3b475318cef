"""Processes by pid, never by name: is this still the process we started, signal its group, wait for it, its
tree, and who listens on a port. The supervisor's ground floor."""

from __future__ import annotations

import contextlib
import os

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
