"""Typed model of ``platform.yaml``, the user's description of the stack.

Validation is strict so that a typo or a clashing network range fails here, naming
the field, instead of halfway through a deployment.
"""

from __future__ import annotations

import ipaddress
import re
import reprlib
from typing import Annotated, Literal, Self

import psutil
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    Field,
    model_validator,
)

from platform_core.config.base import ConfigError, Port, _check, _FieldError, _Model
from platform_core.config.k3s import K3sConfig
from platform_core.config.network import NetworkConfig
from platform_core.config.orchestrator import DagsterService, OrchestratorConfig
from platform_core.config.pins import unpinned
from platform_core.redact import redact_url


def is_loopback(address: str) -> bool:
    try:
        return address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a hostname: assume another machine


def _is_local(address: ipaddress.IPv4Address) -> bool:
    """An address of one of this machine's interfaces (the default host.address 127.0.0.1 then reaches it)."""
    mine = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    return address.is_loopback or str(address) in mine


class HostConfig(_Model):
    address: str = Field("127.0.0.1", min_length=1)
    ssh_user: str | None = None
    ssh_key: str | None = None
    ssh_port: int = Field(22, strict=True, ge=1, le=65535)
    os_family: Literal["auto", "rhel", "debian"] = "auto"


def _version(example: str) -> AfterValidator:
    """Require the shape of ``example``: v-prefixed semver, plus ``+k3sN`` for k3s."""
    pattern = r"v\d+\.\d+\.\d+" + (r"\+k3s\d+" if "+k3s" in example else "")
    return _check(lambda v: re.fullmatch(pattern, v), f"{{v}} is not like {example!r}")


def _pinned_image(ref: str) -> str:
    """Unpinned images broke the seed deployment when upstream moved under it."""
    name, _, digest = ref.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]  # "host:5000/img" has no tag
    if tag == "latest" or not (tag or digest):
        what = "uses the 'latest' tag" if tag else "has no tag"
        raise ValueError(f"image {ref!r} {what}; pin an explicit version tag")
    return ref


Image = Annotated[str, AfterValidator(_pinned_image)]


def _pinned(component: str) -> AfterValidator:
    """Only what infra/upstream.yaml pins (with its digests) can be installed: refuse anything else at load."""

    def run(version: str) -> str:
        problem = unpinned(component, version)
        if problem:
            raise ValueError(problem)
        return version

    return AfterValidator(run)


class VersionsConfig(_Model):
    k3s: Annotated[str, _version("v1.31.4+k3s1"), _pinned("k3s")] = "v1.31.4+k3s1"
    # v0.12.1 (ConfigMap) is the hand-run deployment's and end-of-life; v0.15.3 (CRDs) is the one to choose.
    metallb: Annotated[str, _version("v0.12.1"), _pinned("metallb")] = "v0.12.1"
    argocd: Annotated[str, _version("v3.5.1"), _pinned("argocd")] = "v3.5.1"
    postgres_image: Image = "postgres:13-alpine"
    seaweedfs_image: Image = "chrislusf/seaweedfs:4.48"
    # The project's own image (mlflow server, data API, inference, training pods): see infra/image/.
    platform_image: Image = "ghcr.io/example/mlops-platform:0.1.0"
    mlflow: str = Field("3.17.2", min_length=1)

    @property
    def metallb_mode(self) -> Literal["configmap", "crd"]:
        """MetalLB < v0.13 is configured by a ConfigMap, later versions only by CRDs."""
        major, minor, _ = (int(part) for part in self.metallb[1:].split("."))
        return "configmap" if (major, minor) < (0, 13) else "crd"


class PostgresService(_Model):
    port: Port = 55432  # not 5432: a system PostgreSQL often holds it already


class SeaweedService(_Model):
    master_port: Port = 9333
    volume_port: Port = 8080
    filer_port: Port = 8888
    s3_port: Port = 8333


class MlflowService(_Model):
    port: Port = 5000
    workers: int = Field(1, strict=True, ge=1, le=8)


class InferenceService(_Model):
    port: Port = 8000
    threads: int = Field(1, strict=True, ge=1, le=8)  # model threads per request: more only adds contention
    max_batch_rows: int = Field(1000, strict=True, ge=1, le=100_000)
    max_body_bytes: int = Field(1_048_576, strict=True, ge=1024)
    # predictions buffered before a write to S3 (else every 10 s): one Parquet file and PUT per ~10k rows, not a
    # PUT per few requests, which under batch load cost the server more CPU than its predictions
    log_flush_rows: int = Field(10_000, strict=True, ge=1)


class DataApiService(_Model):
    """The bundled offline data API: real housing listings served batch by batch, like the seed's source."""

    port: Port = 8001


class ServicesConfig(_Model):
    postgres: PostgresService = Field(default_factory=PostgresService)
    seaweedfs: SeaweedService = Field(default_factory=SeaweedService)
    mlflow: MlflowService = Field(default_factory=MlflowService)
    inference: InferenceService = Field(default_factory=InferenceService)
    data_api: DataApiService = Field(default_factory=DataApiService)
    dagster: DagsterService = Field(default_factory=DagsterService)

    def ports(self) -> dict[str, int]:
        """``"services.<svc>.<field>"`` -> port, in declaration order."""
        out: dict[str, int] = {}
        for svc_name in type(self).model_fields:
            svc = getattr(self, svc_name)
            for field in type(svc).model_fields:
                if field.endswith("port"):
                    out[f"services.{svc_name}.{field}"] = getattr(svc, field)
        return out

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        taken: dict[int, str] = {}
        for path, port in self.ports().items():
            loc = path.removeprefix("services.")
            # SeaweedFS servers also bind port + 10000 for gRPC.
            grpc = port + 10000 if loc.startswith("seaweedfs.") else None
            if grpc and grpc > 65535:
                raise _FieldError(loc, f"port {port} leaves no room for gRPC (port + 10000); max 55535")
            if port in taken:
                raise _FieldError(loc, f"port {port} is already used by {taken[port]}")
            if grpc in taken:
                raise _FieldError(loc, f"its gRPC port {grpc} (+10000) is already used by {taken[grpc]}")
            taken[port] = path
            if grpc:
                taken[grpc] = f"the gRPC port of {path}"
        return self


_RESERVED_OWNERS = {"admin": "the S3 admin", "readonly": "the shared read-only identity"}
_PG_NAME = r"[a-z_][a-z0-9_]{0,62}"
_PG_RESERVED_DBS = ("postgres", "template0", "template1")
# S3's naming rules (so names also work on real S3): (pattern to refuse, reason).
_BUCKET_RULES = [
    (r".{0,2}|.{64,}", "must be 3-63 characters long"),
    (r".*[^a-z0-9.-].*", "may only contain lowercase letters, digits, '-' and '.'"),
    (r"[.-].*|.*[.-]", "must start and end with a letter or digit"),
    (r".*\.\..*", "must not contain '..'"),
    (r"\d+\.\d+\.\d+\.\d+", "must not be formatted as an IP address"),
    (r"(xn--|sthree-).*", "must not start with 'xn--' or 'sthree-'"),
    (r".*(-s3alias|--ol-s3)", "must not end with '-s3alias' or '--ol-s3'"),
]


def _bucket_name(v: str) -> str:
    for pattern, reason in _BUCKET_RULES:
        if re.fullmatch(pattern, v, re.DOTALL):
            raise ValueError(f"{reprlib.repr(v)} is not a valid S3 bucket name: {reason}")
    return v


def _owner(v: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", v):
        raise ValueError(f"owner {reprlib.repr(v)} must match [a-z][a-z0-9_-]{{0,31}}")
    if v in _RESERVED_OWNERS:
        raise ValueError(f"owner {v!r} is reserved for {_RESERVED_OWNERS[v]}")
    return v


PgName = Annotated[str, _check(lambda v: re.fullmatch(_PG_NAME, v), "{v} must match " + _PG_NAME)]


class BucketConfig(_Model):
    name: Annotated[str, AfterValidator(_bucket_name)]
    owner: Annotated[str, AfterValidator(_owner)]  # the S3 identity that may write it


class DatabaseConfig(_Model):
    name: Annotated[PgName, _check(lambda v: v not in _PG_RESERVED_DBS, "{v} is reserved")]
    # PostgreSQL reserves the pg_ prefix for built-in roles.
    owner: Annotated[PgName, _check(lambda v: not re.match("postgres$|pg_", v), "{v} is reserved")]


class MlflowConfig(_Model):
    database: str = "mlflow"
    artifact_bucket: str = "mlflow-artifacts"
    experiment: str = Field("housing-prices", min_length=1)


class AlertsConfig(_Model):
    webhook_url: AnyHttpUrl | None = None
    log_file: str = Field("alerts.jsonl", min_length=1)  # relative to state_dir
    timeout_seconds: float = Field(5, gt=0, le=60)
    retries: int = Field(3, strict=True, ge=0, le=10)
    backoff_seconds: float = Field(0.5, ge=0)


class FreshnessConfig(_Model):
    """Maximum age, in minutes, before a platform / data / model check fails."""

    platform_minutes: int = Field(60, strict=True, gt=0)
    data_minutes: int = Field(1440, strict=True, gt=0)
    model_minutes: int = Field(10080, strict=True, gt=0)


class MlConfig(_Model):
    """The model pipeline: where batches come from, where they go, and what a champion must achieve."""

    source_url: AnyHttpUrl | None = None  # the seed's batch API; None = the bundled offline data API
    group_number: int = Field(1, strict=True, ge=0)
    batches: int = Field(8, strict=True, ge=1, le=1000)  # partitions: day 0 .. batches-1
    batch_rows: int = Field(300, strict=True, ge=20, le=100_000)  # rows per batch of the offline API
    timeout_seconds: float = Field(10, gt=0, le=300)  # one request
    retries: int = Field(3, strict=True, ge=0, le=10)
    backoff_seconds: float = Field(0.5, ge=0)
    deadline_seconds: float = Field(30, gt=0, le=3600)  # one batch, every retry included
    # What one batch may be, checked while it arrives and before anything is stored: its bytes, rows, and text.
    max_response_bytes: int = Field(64 * 1024 * 1024, strict=True, ge=1024)
    max_batch_rows: int = Field(100_000, strict=True, ge=1)
    max_text_chars: int = Field(200, strict=True, ge=1)  # street, city, state, status, prev_sold_date
    datasets_bucket: str = "datasets"
    predictions_bucket: str = "predictions"
    reports_bucket: str = "reports"
    model_name: Annotated[
        str, _check(lambda v: re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v), "{v} is not a valid model name")
    ] = "housing-price"
    holdout_percent: int = Field(20, strict=True, ge=5, le=50)
    quality_floor_r2: float = Field(0.5, ge=-1, le=1)  # the first champion must reach this on the holdout
    min_improvement: float = Field(0.0, ge=0, le=1)  # a challenger must cut holdout RMSE by this fraction
    drift_share: float = Field(0.5, gt=0, le=1)  # dataset drift when this share of columns drifted
    drift_mode: Literal["compatible", "strict"] = "compatible"  # strict: p-value tests for categories at any size
    retrain_cooldown_minutes: int = Field(60, strict=True, ge=0)  # one drift, one retraining
    # The champion's RMSE(log) on newly labelled batches may exceed its holdout RMSE(log) by this fraction.
    degradation_tolerance: float = Field(0.25, ge=0, le=10)


class PlatformConfig(_Model):
    target: Literal["local", "k3s"] = "local"
    state_dir: str = Field(".platform", min_length=1)  # relative: to the process cwd
    host: HostConfig = Field(default_factory=HostConfig)
    network: NetworkConfig | None = None
    k3s: K3sConfig = Field(default_factory=K3sConfig)
    versions: VersionsConfig = Field(default_factory=VersionsConfig)
    services: ServicesConfig = Field(default_factory=ServicesConfig)
    buckets: list[BucketConfig] = Field(
        default_factory=lambda: [
            BucketConfig(name=name, owner="mlflow" if name.startswith("mlflow") else "ml")
            for name in ("mlflow-artifacts", "datasets", "predictions", "reports")
        ]
    )
    databases: list[DatabaseConfig] = Field(
        default_factory=lambda: [
            DatabaseConfig(name="mlflow", owner="mlflow"),
            DatabaseConfig(name="mldata", owner="ml"),
            DatabaseConfig(name="dagster", owner="dagster"),
        ]
    )
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    freshness: FreshnessConfig = Field(default_factory=FreshnessConfig)
    ml: MlConfig = Field(default_factory=MlConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.target == "k3s":
            if self.network is None:
                raise _FieldError("network", "required when target is k3s")
            source = str(self.ml.source_url or "")
            if source and redact_url(source) != source:  # step pods get the URL as a Pipes extra, which is logged
                msg = "carries credentials (userinfo or a token); the k3s target passes it to step pods as a Pipes "
                raise _FieldError(("ml", "source_url"), msg + "extra, which Dagster logs: use a URL without them")
            if "address" not in self.host.model_fields_set and not _is_local(self.network.host_ip):
                msg = f"required when target is k3s: network.host_ip {self.network.host_ip} is not this machine"
                raise _FieldError("host.address", msg + " (set the VM's address, or run platformctl on the VM)")
            if not self.host.ssh_user and not is_loopback(self.host.address):
                msg = f"required when target is k3s and host {self.host.address} is remote"
                raise _FieldError("host.ssh_user", msg)
        databases = {"mlflow.database": self.mlflow.database}
        if self.target == "local":  # the Dagster instance lives there (k3s: in the state directory, for now)
            databases["orchestrator.database"] = self.orchestrator.database
        for field, needed, items in (
            ("buckets", {"mlflow.artifact_bucket": self.mlflow.artifact_bucket}, self.buckets),
            ("databases", databases, self.databases),
        ):
            names = [item.name for item in items]
            for i, name in enumerate(names):
                if name in names[:i]:
                    raise _FieldError((field, i, "name"), f"duplicate name {name!r}")
            for key, want in needed.items():
                if want not in names:
                    raise _FieldError(field, f"must include {key} {want!r} (has: {', '.join(names)})")
        if self.target == "local":
            self._own_database_roles()
        if self.ml.source_url is None and self.ml.batch_rows > self.ml.max_batch_rows:
            limit = self.ml.max_batch_rows
            raise _FieldError(("ml", "batch_rows"), f"{self.ml.batch_rows} is over ml.max_batch_rows ({limit})")
        buckets = {b.name for b in self.buckets}
        for key in ("datasets_bucket", "predictions_bucket", "reports_bucket"):
            if (want := getattr(self.ml, key)) not in buckets:
                raise _FieldError(("ml", key), f"bucket {want!r} is not declared in buckets")
        return self

    def _own_database_roles(self) -> None:
        """The instance's role owns nothing else: its password is in every Dagster process's environment."""
        role = next(db.owner for db in self.databases if db.name == self.orchestrator.database)
        shared = [db.name for db in self.databases if db.owner == role and db.name != self.orchestrator.database]
        if shared:
            msg = f"role {role!r} owns orchestrator.database and also {', '.join(shared)}: give each its own role"
            raise _FieldError("databases", msg)

    @model_validator(mode="after")
    def _training_image(self) -> Self:
        """k3s.training.image left out = versions.platform_image: one image to build, import or pull."""
        if self.k3s.training.image is None:
            training = self.k3s.training.model_copy(update={"image": self.versions.platform_image})
            object.__setattr__(self, "k3s", self.k3s.model_copy(update={"training": training}))  # frozen model
        return self

    @property
    def cluster_network(self) -> NetworkConfig:
        """`network`, which the k3s target requires (validated at load; None only in the local target)."""
        if self.network is None:
            raise ConfigError("platform.yaml", "network", "required by the k3s target")
        return self.network

    @property
    def identities(self) -> list[str]:
        """S3 service identities to create: every bucket owner plus "readonly"."""
        return sorted({b.owner for b in self.buckets} | {"readonly"})

    def bucket(self, name: str) -> BucketConfig:
        for b in self.buckets:
            if b.name == name:
                return b
        raise KeyError(f"no bucket named {name!r} in config")

    def all_ports(self) -> dict[str, int]:
        return self.services.ports()
