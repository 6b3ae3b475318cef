"""Helpers to give each test stack its own ports and state directory, apart from a developer's running stack."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GRPC_OFFSET = 10000


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """Where the kernel starts handing out ports to outgoing connections (and to bind(0))."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port_block(size: int = 11) -> int:  # at most 20
    """A base port such that base..base+size-1 and their +10000 gRPC twins are all free (blocks are 20 apart, so
    two stacks never share a port).

    Every port stays below the ephemeral range: a service started late in the session (the inference service, on
    its first deploy) must not find its port taken by some client connection's local end."""
    rng = random.Random()
    top = max(_ephemeral_low() - GRPC_OFFSET - size, 12000)
    for _ in range(200):
        base = rng.randrange(10000, top, 20)
        ports = [base + i for i in range(size)]
        if all(_free(p) and _free(p + GRPC_OFFSET) for p in ports):
            return base
    raise RuntimeError("no free block of ports on 127.0.0.1")


def write_stack_config(directory: Path, **overrides: object) -> Path:
    """The shipped platform.yaml with fresh ports and a state dir inside `directory`."""
    data = yaml.safe_load((REPO / "platform.yaml").read_text())
    base = free_port_block()
    data["state_dir"] = str(directory / "state")
    data["services"] = {
        "postgres": {"port": base},
        "seaweedfs": {"master_port": base + 1, "volume_port": base + 2, "filer_port": base + 3, "s3_port": base + 4},
        "mlflow": {"port": base + 5, "workers": 1},
        "inference": {"port": base + 6},
        "data_api": {"port": base + 7},
        "dagster": {"webserver_port": base + 8, "platform_code_port": base + 9, "ml_code_port": base + 10},
    }
    data.update(overrides)
    path = directory / "platform.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
