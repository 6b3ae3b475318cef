"""SeaweedFS as one service of two processes: `weed server` without its volume server, then `weed volume` once
the master leads.

Inside one `weed server` the volume server first reaches the master ~1.8 s in (its retry interval after the
master's gRPC port was not up yet: checkWithMaster, weed/server/volume_grpc_client_to_master.go), while the master
of a new or restarted cluster elects itself 1.5 to 1.9 s in. In about one start of four the volume server's first
heartbeat meets "raft.Server: Not current leader", it beats again only 5 s later, and every write fails meanwhile.
Started after the election, its first heartbeat counts.

Both run in this launcher's process group, which the supervisor signals and reaps as the service's.

    python -m platform_core.services.seaweedfs_launch <master /cluster/status URL> <weed server argv> \
        --volume <weed volume argv>
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

VOLUME = "--volume"
LEADER_WAIT_SECONDS = 10.0  # well inside the service's start timeout: past it the volume server retries alone


def leads(status_url: str) -> bool:
    try:
        with urllib.request.urlopen(status_url, timeout=1) as response:
            return bool(json.load(response).get("IsLeader"))
    except (OSError, ValueError):  # not listening yet, or not JSON yet
        return False


def await_leader(status_url: str, server: subprocess.Popen[bytes]) -> None:
    """Until the master leads, or it exited, or LEADER_WAIT_SECONDS passed (an unexpected answer from a newer
    weed: the volume server then starts anyway and retries its heartbeat on its own)."""
    deadline = time.monotonic() + LEADER_WAIT_SECONDS
    while server.poll() is None and time.monotonic() < deadline and not leads(status_url):
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    status_url, rest = argv[0], argv[1:]
    split = rest.index(VOLUME)
    # The stop signal reaches the whole group, the two weed processes included: this one stays while they act on
    # it, so the group keeps its leader until the supervisor's grace ends (and its SIGKILL takes what is left).
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    server = subprocess.Popen(rest[:split])
    await_leader(status_url, server)
    children = [server] if server.poll() is not None else [server, subprocess.Popen(rest[split + 1 :])]
    while all(child.poll() is None for child in children):  # either one exiting ends the service (restarted whole)
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        child.wait()
    return 0 if stopping else 1  # an exit nobody asked for is a failure


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
