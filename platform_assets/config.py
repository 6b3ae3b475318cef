"""Typed model of ``platform.yaml``, the user's description of the stack.

Validation is strict so that a typo or a clashing network range fails here, naming
the field, instead of halfway through a deployment.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import reprlib
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A config problem as one line: ``<file>: <dotted.field.path>: <message>``."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = source, path, message
        text = ": ".join(part for part in (source, path, message) if part)
        super().__init__(" ".join(text.splitlines()))  # logged as a single line


class _FieldError(ValueError):
    """Raised by cross-field checks to blame one sub-field, not the whole model."""

    def __init__(self, field: str | tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(field.split(".")) if isinstance(field, str) else field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check(predicate: Any, message: str) -> AfterValidator:
    """A field check; ``message`` may show the (shortened) bad value as ``{v}``."""

    def run(v: Any) -> Any:
        if not predicate(v):
            raise ValueError(message.replace("{v}", reprlib.repr(v)))
        return v

    return AfterValidator(run)


# Strict: YAML already yields ints, so a quoted "5000" is a mistake worth flagging.
Port = Annotated[int, Field(strict=True, ge=1024, le=65535)]


def _is_loopback(address: str) -> bool:
    try:
        return address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a hostname: assume another machine


class HostConfig(_Model):
    address: str = Field("127.0.0.1", min_length=1)
    ssh_user: str | None = None
    ssh_key: str | None = None
    ssh_port: int = Field(22, strict=True, ge=1, le=65535)
    os_family: Literal["auto", "rhel", "debian"] = "auto"


def _parse_pool(pool: str) -> tuple[IPv4Address, IPv4Address]:
    try:
        if "-" in pool:
            first, last = (IPv4Address(part.strip()) for part in pool.split("-", 1))
        else:
            net = IPv4Network(pool.strip())
            first, last = net.network_address, net.broadcast_address
    except ValueError:
        raise ValueError(f"cannot parse {pool!r}; use 'a.b.c.d-e.f.g.h' or a CIDR 'a.b.c.d/n'") from None
    if first > last:
        raise ValueError(f"range {pool!r} starts after it ends")
    return first, last


def _overlaps(net: IPv4Network, first: IPv4Address, last: IPv4Address) -> bool:
    return net.network_address <= last and first <= net.broadcast_address


class NetworkConfig(_Model):
    """k3s networking; k3s's default CIDRs clash with LANs that are in 10.42/10.43."""

    host_ip: IPv4Address
    host_subnet: IPv4Network
    pod_cidr: IPv4Network = IPv4Network("10.42.0.0/16")
    service_cidr: IPv4Network = IPv4Network("10.43.0.0/16")
    cluster_dns: IPv4Address = IPv4Address("10.43.0.10")
    metallb_pool: str

    @field_validator("metallb_pool")
    @classmethod
    def _pool_parses(cls, v: str) -> str:
        _parse_pool(v)
        return v

    @property
    def pool_range(self) -> tuple[IPv4Address, IPv4Address]:
        """First and last address MetalLB may hand out (inclusive)."""
        return _parse_pool(self.metallb_pool)

    def _free16(self, field: str, other: IPv4Network) -> str:
        """First 10.X.0.0/16 (X from 42 up, wrapping) that clashes with nothing."""
        avoid = [self.host_subnet, IPv4Network(self.host_ip), other]
        for x in [*range(42, 256), *range(42)]:
            cand = IPv4Network(f"10.{x}.0.0/16")
            if not any(map(cand.overlaps, avoid)) and not _overlaps(cand, *self.pool_range):
                dns = f" with cluster_dns {cand[10]}" if field == "service_cidr" else ""
                return f"; use a free /16 such as {cand}{dns}"
        return "; pick an unused private range"

    def _problem(self) -> tuple[str, str] | None:
        ip, subnet, dns = self.host_ip, self.host_subnet, self.cluster_dns
        pod, svc, (first, last) = self.pod_cidr, self.service_cidr, self.pool_range
        if ip not in subnet:
            return "host_ip", f"host_ip {ip} is not inside host_subnet {subnet}"
        # The seed's outage: a node IP inside a cluster CIDR is routed into the cluster.
        for name, cidr, other in (("pod_cidr", pod, svc), ("service_cidr", svc, pod)):
            fix = self._free16(name, other)
            if ip in cidr:
                return name, f"host_ip {ip} is inside {name} {cidr}{fix}"
            if cidr.overlaps(subnet):
                return name, f"{name} {cidr} overlaps host_subnet {subnet}{fix}"
        if svc.overlaps(pod):
            fix = self._free16("service_cidr", pod)
            return "service_cidr", f"service_cidr {svc} overlaps pod_cidr {pod}{fix}"
        bad, use = f"cluster_dns {dns}", f"; use {svc.network_address + 10}"
        if dns not in svc:
            return "cluster_dns", f"{bad} is outside service_cidr {svc}{use}"
        if dns in (svc.network_address, svc.broadcast_address):
            return "cluster_dns", f"{bad} is not a usable address of {svc}{use}"
        if dns == svc.network_address + 1:  # always taken by the `kubernetes` Service
            return "cluster_dns", f"{bad} is the `kubernetes` Service ClusterIP{use}"
        pool = f"metallb_pool {self.metallb_pool}"
        for name, cidr in (("pod_cidr", pod), ("service_cidr", svc)):
            if _overlaps(cidr, first, last):
                return "metallb_pool", f"{pool} overlaps {name} {cidr}"
        if first not in subnet or last not in subnet:  # L2 mode only answers ARP on the LAN
            return "metallb_pool", f"{pool} is not entirely inside host_subnet {subnet}"
        if first <= ip <= last:
            return "metallb_pool", f"{pool} contains host_ip {ip}"
        return None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if problem := self._problem():
            raise _FieldError(*problem)
        return self


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


class VersionsConfig(_Model):
    k3s: Annotated[str, _version("v1.31.4+k3s1")] = "v1.31.4+k3s1"
    metallb: Annotated[str, _version("v0.12.1")] = "v0.12.1"
    argocd: Annotated[str, _version("v3.5.1")] = "v3.5.1"
    postgres_image: Image = "postgres:13-alpine"
    seaweedfs_image: Image = "chrislusf/seaweedfs:4.48"
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


class ServicesConfig(_Model):
    postgres: PostgresService = Field(default_factory=PostgresService)
    seaweedfs: SeaweedService = Field(default_factory=SeaweedService)
    mlflow: MlflowService = Field(default_factory=MlflowService)
    inference: InferenceService = Field(default_factory=InferenceService)

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


class PlatformConfig(_Model):
    target: Literal["local", "k3s"] = "local"
    state_dir: str = Field(".platform", min_length=1)  # relative: to the process cwd
    host: HostConfig = Field(default_factory=HostConfig)
    network: NetworkConfig | None = None
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
        ]
    )
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    freshness: FreshnessConfig = Field(default_factory=FreshnessConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.target == "k3s":
            if self.network is None:
                raise _FieldError("network", "required when target is k3s")
            if not self.host.ssh_user and not _is_loopback(self.host.address):
                msg = f"required when target is k3s and host {self.host.address} is remote"
                raise _FieldError("host.ssh_user", msg)
        for field, key, items in (
            ("buckets", "artifact_bucket", self.buckets),
            ("databases", "database", self.databases),
        ):
            names = [item.name for item in items]
            for i, name in enumerate(names):
                if name in names[:i]:
                    raise _FieldError((field, i, "name"), f"duplicate name {name!r}")
            if (want := getattr(self.mlflow, key)) not in names:
                msg = f"must include mlflow.{key} {want!r} (has: {', '.join(names)})"
                raise _FieldError(field, msg)
        return self

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


def _model_in(tp: Any) -> Any:
    """The model class inside an annotation such as ``list[X]`` or ``X | None``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return next(filter(None, map(_model_in, get_args(tp))), None)


def _unknown_key(loc: tuple[Any, ...]) -> str:
    model = PlatformConfig
    for part in loc[:-1]:
        if isinstance(part, str):  # list indexes keep the item model
            model = _model_in(model.model_fields[part].annotation)
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


_TYPE_MESSAGES = {"model_type": "must be a mapping", "dict_type": "must be a mapping"}


def _to_config_error(err: ValidationError, source: str) -> ConfigError:
    errors = err.errors()
    first, kind = errors[0], errors[0]["type"]
    cause = first.get("ctx", {}).get("error")
    loc = (*first["loc"], *(cause.loc if isinstance(cause, _FieldError) else ()))
    if kind == "extra_forbidden":
        message = _unknown_key(loc)
    elif kind == "missing":
        message = "required"
    elif isinstance(cause, ValueError):
        message = str(cause)
    else:  # pydantic's wording minus its "Input should be" preamble, plus the value
        text = _TYPE_MESSAGES.get(kind) or first["msg"].replace("Input should be", "must be")
        message = f"{text.removeprefix('Input ')} (got {reprlib.repr(first['input'])})"
    if len(errors) > 1:
        message += f" (+{len(errors) - 1} more)"
    return ConfigError(source, ".".join(map(str, loc)), message)


def parse_config(data: dict[str, Any], source: str = "<config>") -> PlatformConfig:
    """Validate an already-loaded mapping; ``source`` names it in error messages."""
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as err:
        raise _to_config_error(err, source) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML silently overwrites."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        for i, key in enumerate(keys):
            if isinstance(key, (str, int)) and key in keys[:i]:
                mark = node.value[i][0].start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path) -> PlatformConfig:
    """Read and validate a platform.yaml; any failure is a one-line ``ConfigError``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot read file: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no object tags
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, where, f"invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"invalid YAML: {exc}") from None
    if data is None:
        data = {}  # an empty file means "all defaults"
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(source, "", f"top level must be a mapping of sections, not {kind}")
    return parse_config(data, source)
