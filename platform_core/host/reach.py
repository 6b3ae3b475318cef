"""Which executor reaches the host: this machine's own, or SSH (whose module, and paramiko with it, loads only
then: the definitions of both locations reach this module)."""

from __future__ import annotations

import getpass
from pathlib import Path

from platform_core.config.models import PlatformConfig, is_loopback
from platform_core.host.executor import Executor, LocalExecutor


def executor_for(cfg: PlatformConfig, state_dir: Path) -> Executor:
    """Local when the host is this machine and no SSH user is set; otherwise SSH (TOFU in state_dir/known_hosts)."""
    host = cfg.host
    if is_loopback(host.address) and not host.ssh_user:
        return LocalExecutor()
    from platform_core.host.ssh import SshExecutor

    return SshExecutor(
        host.address,
        user=host.ssh_user or getpass.getuser(),
        port=host.ssh_port,
        key_path=host.ssh_key,
        known_hosts=state_dir / "known_hosts",
    )
