"""Facts about the machine the local target runs on, and the preflight tests that gate everything else."""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil

from platform_core.catalog import SERVICE_ASSETS
from platform_core.config import ConfigError, load_config
from platform_core.processes import ports_in_use
from platform_core.resource import PlatformResource

MIN_FREE_DISK_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class PortConflict:
    field: str
    port: int
    pid: int | None
    process: str

    def __str__(self) -> str:
        return f"{self.field} port {self.port} is held by {self.process} (pid {self.pid})"


class HostResource(PlatformResource):
    """The local host: facts for the UI and preflight verdicts for the checks."""

    def facts(self) -> dict[str, object]:
        disk = shutil.disk_usage(self.state.root)
        addresses = sorted(
            addr.address for addrs in psutil.net_if_addrs().values() for addr in addrs if addr.family.name == "AF_INET"
        )
        # psutil types laddr as "addr or ()": () only for unbound UNIX sockets, which kind "tcp" never lists
        listening = sorted({c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN})  # type: ignore[union-attr]
        return {
            "os": _os_name(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": psutil.cpu_count() or 0,
            "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
            "disk_free_gib": round(disk.free / 1024**3, 1),
            "addresses": addresses,
            "listening_ports": listening,
            "state_dir": str(self.state.root),
        }

    def port_conflicts(self) -> list[PortConflict]:
        """Configured ports held by anything but our own supervised services."""
        return self.port_holders()[0]

    def port_holders(self) -> tuple[list[PortConflict], list[str]]:
        """In one pass over the listening sockets: the configured ports held by a process that is not ours
        (conflicts), and those held by what is left of one of our services after its leader died (a kill -9 of
        mlflow leaves its uvicorn child on the port): ours, reaped by the service's next start, but worth saying."""
        wanted = self.cfg.all_ports()
        busy = ports_in_use(tuple(wanted.values()))
        supervisor = self.supervisor
        orphans = {pid: name for name in SERVICE_ASSETS for pid in supervisor.orphans(name)}
        ours = set(orphans).union(*(supervisor.process_tree(name) for name in SERVICE_ASSETS))
        conflicts, orphaned = [], []
        for field, port in wanted.items():
            pid = busy.get(port)
            if port in busy and pid not in ours:
                conflicts.append(PortConflict(field, port, pid, _process_name(pid)))
            elif pid in orphans:
                orphaned.append(f"{orphans[pid]}'s orphan pid {pid} holds {port}")
        return conflicts, orphaned

    def free_disk_bytes(self) -> int:
        return shutil.disk_usage(self.state.root).free

    def config_problem(self) -> str | None:
        """Re-read platform.yaml from disk: an edit since the code location loaded must still validate."""
        try:
            load_config(Path(self.config_path))
        except ConfigError as err:
            return str(err)
        return None


def _process_name(pid: int | None) -> str:
    if pid is None:
        return "another user's process"
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "an exited process"


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()
