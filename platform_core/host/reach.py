"""Which executor reaches the host: this machine's own, or SSH (whose module, and paramiko with it, loads only
then: the definitions of both locations reach this module)."""

from __future__ import annotations

import getpass
import ipaddress
from pathlib import Path

from platform_core.config.models import PlatformConfig
from platform_core.host.executor import Executor, LocalExecutor


def _is_local(address: str) -> bool:
    try:
        return address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def executor_for(cfg: PlatformConfig, state_dir: Path) -> Executor:
    """Local when the host is this machine and no SSH user is set; otherwise SSH (TOFU in state_dir/known_hosts)."""
    host = cfg.host
    if _is_local(host.address) and not host.ssh_user:
        return LocalExecutor()
    from platform_core.host.ssh import SshExecutor

    return SshExecutor(
        host.address,
        user=host.ssh_user or getpass.getuser(),
        port=host.ssh_port,
        key_path=host.ssh_key,
        known_hosts=state_dir / "known_hosts",
    )
