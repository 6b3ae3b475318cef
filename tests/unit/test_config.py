"""Unit tests for platform_core.config: the platform.yaml schema and its errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from platform_core.cluster.render import SEED_NETWORK  # the seed's network after the hand-made fix
from platform_core.config import ConfigError, load_config, parse_config

REPO_CONFIG = Path(__file__).parents[2] / "platform.yaml"


def valid() -> dict[str, Any]:
    """A fresh, valid k3s config that each malformed case mutates."""
    return {
        "target": "k3s",
        "host": {"address": "10.43.100.94", "ssh_user": "rocky"},
        "network": dict(SEED_NETWORK),
        "buckets": [
            {"name": "mlflow-artifacts", "owner": "mlflow"},
            {"name": "datasets", "owner": "ml"},
            {"name": "predictions", "owner": "ml"},
            {"name": "reports", "owner": "ml"},
        ],
        "databases": [
            {"name": "mlflow", "owner": "mlflow"},
            {"name": "mldata", "owner": "ml"},
            {"name": "dagster", "owner": "dagster"},
        ],
    }


Mutation = Callable[[dict[str, Any]], None]


def _walk(cfg: dict[str, Any], dotted: str) -> tuple[Any, Any]:
    """(container, last key) for a dotted path; missing mappings are created."""
    *parents, last = (int(k) if k.isdigit() else k for k in dotted.split("."))
    node: Any = cfg
    for key in parents:
        node = node[key] if isinstance(key, int) else node.setdefault(key, {})
    return node, last


def _set(dotted: str, value: Any) -> Mutation:
    def mutate(cfg: dict[str, Any]) -> None:
        node, last = _walk(cfg, dotted)
        node[last] = value

    return mutate


def _del(*dotted: str) -> Mutation:
    def mutate(cfg: dict[str, Any]) -> None:
        for path in dotted:
            node, last = _walk(cfg, path)
            del node[last]

    return mutate


def _append(dotted: str, item: Any) -> Mutation:
    def mutate(cfg: dict[str, Any]) -> None:
        node, last = _walk(cfg, dotted)
        node[last].append(item)

    return mutate


# (id, mutation of valid(), expected field path, expected message fragment)
MALFORMED: list[tuple[str, Mutation, str, str]] = [
    # --- network: the seed's lessons ---
    (
        "seed-host-in-default-service-cidr",
        _del("network.pod_cidr", "network.service_cidr", "network.cluster_dns"),
        "network.service_cidr",
        "inside service_cidr 10.43.0.0/16; use a free /16 such as 10.44.0.0/16 with cluster_dns 10.44.0.10",
    ),
    (
        "host-in-pod-cidr",
        _set("network.pod_cidr", "10.43.0.0/16"),
        "network.pod_cidr",
        "inside pod_cidr 10.43.0.0/16; use a free /16 such as 10.42.0.0/16",
    ),
    (
        "host-ip-outside-host-subnet",
        _set("network.host_subnet", "10.43.101.0/24"),
        "network.host_ip",
        "is not inside host_subnet 10.43.101.0/24",
    ),
    (
        "pod-cidr-overlaps-host-subnet",
        _set("network.host_subnet", "10.40.0.0/13"),
        "network.pod_cidr",
        "overlaps host_subnet 10.40.0.0/13; use a free /16 such as 10.48.0.0/16",
    ),
    (
        "service-cidr-overlaps-pod-cidr",
        _set("network.service_cidr", "10.44.128.0/17"),
        "network.service_cidr",
        "overlaps pod_cidr 10.44.0.0/16",
    ),
    (
        "host-subnet-has-host-bits",
        _set("network.host_subnet", "10.43.100.94/24"),
        "network.host_subnet",
        "10.43.100.94/24 has host bits set; the network is 10.43.100.0/24",
    ),
    (
        "pod-cidr-has-host-bits",
        _set("network.pod_cidr", "10.44.0.1/16"),
        "network.pod_cidr",
        "has host bits set",
    ),
    (
        "metallb-pool-cidr-has-host-bits",
        _set("network.metallb_pool", "10.43.100.200/28"),
        "network.metallb_pool",
        "has host bits set; the network is 10.43.100.192/28",
    ),
    (
        "k3s-host-address-omitted-for-another-machine",
        lambda cfg: cfg.__setitem__("host", {"ssh_user": "rocky"}),
        "host.address",
        "network.host_ip 10.43.100.94 is not this machine",
    ),
    (
        "host-ip-not-an-address",
        _set("network.host_ip", "10.43.100.300"),
        "network.host_ip",
        "not a valid IPv4 address",
    ),
    (
        "dns-outside-service-cidr",
        _set("network.cluster_dns", "10.43.0.10"),
        "network.cluster_dns",
        "outside service_cidr 10.45.0.0/16; use 10.45.0.10",
    ),
    (
        "dns-is-kubernetes-clusterip",
        _set("network.cluster_dns", "10.45.0.1"),
        "network.cluster_dns",
        "`kubernetes` Service ClusterIP",
    ),
    (
        "dns-is-network-address",
        _set("network.cluster_dns", "10.45.0.0"),
        "network.cluster_dns",
        "not a usable address",
    ),
    (
        "pool-in-pod-cidr",
        _set("network.metallb_pool", "10.44.0.10-10.44.0.20"),
        "network.metallb_pool",
        "overlaps pod_cidr 10.44.0.0/16",
    ),
    (
        "pool-in-service-cidr",
        _set("network.metallb_pool", "10.45.0.0/28"),
        "network.metallb_pool",
        "overlaps service_cidr 10.45.0.0/16",
    ),
    (
        "pool-outside-host-subnet",
        _set("network.metallb_pool", "10.43.101.10-10.43.101.20"),
        "network.metallb_pool",
        "not entirely inside host_subnet 10.43.100.0/24",
    ),
    (
        "pool-contains-host-ip",
        _set("network.metallb_pool", "10.43.100.90-10.43.100.100"),
        "network.metallb_pool",
        "contains host_ip 10.43.100.94",
    ),
    (
        "pool-unparsable",
        _set("network.metallb_pool", "10.43.100.200..220"),
        "network.metallb_pool",
        "cannot parse",
    ),
    (
        "pool-reversed",
        _set("network.metallb_pool", "10.43.100.220-10.43.100.200"),
        "network.metallb_pool",
        "starts after it ends",
    ),
    (
        "k3s-without-network",
        _del("network"),
        "network",
        "required when target is k3s",
    ),
    (
        "k3s-remote-host-without-ssh-user",
        _del("host.ssh_user"),
        "host.ssh_user",
        "host 10.43.100.94 is remote",
    ),
    # --- ports ---
    (
        "duplicate-port",
        _set("services.mlflow.port", 8333),
        "services.mlflow.port",
        "port 8333 is already used by services.seaweedfs.s3_port",
    ),
    (
        "port-on-seaweed-grpc-port",
        _set("services.inference.port", 19333),
        "services.inference.port",
        "already used by the gRPC port of services.seaweedfs.master_port",
    ),
    (
        "seaweed-grpc-port-already-taken",
        _set("services.postgres.port", 18888),
        "services.seaweedfs.filer_port",
        "gRPC port 18888 (+10000) is already used by services.postgres.port",
    ),
    (
        "seaweed-port-without-grpc-room",
        _set("services.seaweedfs.volume_port", 60000),
        "services.seaweedfs.volume_port",
        "max 55535",
    ),
    (
        "port-as-string",
        _set("services.mlflow.port", "5000"),
        "services.mlflow.port",
        "must be a valid integer (got '5000')",
    ),
    (
        "port-below-1024",
        _set("services.postgres.port", 80),
        "services.postgres.port",
        "greater than or equal to 1024",
    ),
    (
        "port-above-65535",
        _set("services.inference.port", 70000),
        "services.inference.port",
        "less than or equal to 65535",
    ),
    (
        "too-many-workers",
        _set("services.mlflow.workers", 9),
        "services.mlflow.workers",
        "less than or equal to 8",
    ),
    # --- shape ---
    (
        "unknown-top-level-key",
        _set("servics", {}),
        "servics",
        "unknown key (did you mean 'services'?)",
    ),
    (
        "unknown-nested-key",
        _set("services.mlflow.prot", 5001),
        "services.mlflow.prot",
        "unknown key",
    ),
    (
        "unknown-key-in-optional-section",
        _set("network.podcidr", "10.44.0.0/16"),
        "network.podcidr",
        "unknown key (did you mean 'pod_cidr'?)",
    ),
    (
        "unknown-key-in-list-item",
        _set("buckets.1.public", True),
        "buckets.1.public",
        "unknown key",
    ),
    (
        "buckets-not-a-list",
        _set("buckets", "datasets"),
        "buckets",
        "must be a valid list (got 'datasets')",
    ),
    (
        "section-not-a-mapping",
        _set("host", "localhost"),
        "host",
        "must be a mapping",
    ),
    (
        "unknown-target",
        _set("target", "k8s"),
        "target",
        "must be 'local' or 'k3s' (got 'k8s')",
    ),
    (
        "unknown-os-family",
        _set("host.os_family", "windows"),
        "host.os_family",
        "'auto', 'rhel' or 'debian'",
    ),
    (
        "ssh-port-zero",
        _set("host.ssh_port", 0),
        "host.ssh_port",
        "greater than or equal to 1",
    ),
    # --- buckets ---
    (
        "bucket-uppercase",
        _set("buckets.1.name", "Datasets"),
        "buckets.1.name",
        "may only contain lowercase letters",
    ),
    (
        "bucket-underscore",
        _set("buckets.1.name", "data_sets"),
        "buckets.1.name",
        "may only contain lowercase letters",
    ),
    ("bucket-too-short", _set("buckets.1.name", "ab"), "buckets.1.name", "3-63"),
    ("bucket-too-long", _set("buckets.1.name", "a" * 64), "buckets.1.name", "3-63"),
    (
        "bucket-ip-formatted",
        _set("buckets.1.name", "192.168.10.20"),
        "buckets.1.name",
        "formatted as an IP address",
    ),
    ("bucket-xn-prefix", _set("buckets.1.name", "xn--data"), "buckets.1.name", "xn--"),
    ("bucket-double-dot", _set("buckets.1.name", "data..sets"), "buckets.1.name", "'..'"),
    (
        "bucket-starts-with-hyphen",
        _set("buckets.1.name", "-datasets"),
        "buckets.1.name",
        "start and end with a letter or digit",
    ),
    (
        "bucket-s3alias-suffix",
        _set("buckets.1.name", "data-s3alias"),
        "buckets.1.name",
        "-s3alias",
    ),
    (
        "duplicate-bucket",
        _append("buckets", {"name": "datasets", "owner": "ml"}),
        "buckets.4.name",
        "duplicate name 'datasets'",
    ),
    ("reserved-owner-admin", _set("buckets.1.owner", "admin"), "buckets.1.owner", "reserved"),
    (
        "reserved-owner-readonly",
        _set("buckets.1.owner", "readonly"),
        "buckets.1.owner",
        "reserved",
    ),
    ("bad-owner", _set("buckets.1.owner", "ML team"), "buckets.1.owner", "must match"),
    (
        "mlflow-bucket-missing",
        lambda cfg: cfg["buckets"].pop(0),
        "buckets",
        "must include mlflow.artifact_bucket 'mlflow-artifacts'",
    ),
    # --- databases ---
    ("bad-db-name", _set("databases.1.name", "ml-data"), "databases.1.name", "must match"),
    ("reserved-db-name", _set("databases.1.name", "template1"), "databases.1.name", "reserved"),
    ("reserved-db-role", _set("databases.1.owner", "postgres"), "databases.1.owner", "reserved"),
    (
        "duplicate-db",
        _append("databases", {"name": "mldata", "owner": "ml"}),
        "databases.3.name",
        "duplicate name 'mldata'",
    ),
    (
        "mlflow-db-missing",
        _set("mlflow.database", "tracking"),
        "databases",
        "must include mlflow.database 'tracking'",
    ),
    (
        "orchestrator-db-missing",
        lambda cfg: (cfg["databases"].pop(2), cfg.update(target="local")),
        "databases",
        "must include orchestrator.database 'dagster' (has: mlflow, mldata)",
    ),
    (
        "orchestrator-role-shared",
        lambda cfg: (cfg["databases"][2].update(owner="ml"), cfg.update(target="local")),
        "databases",
        "role 'ml' owns orchestrator.database and also mldata: give each its own role",
    ),
    ("watchdog-too-fast", _set("orchestrator.watchdog_seconds", 1), "orchestrator.watchdog_seconds", "greater than"),
    # --- versions ---
    (
        "image-tag-latest",
        _set("versions.postgres_image", "postgres:latest"),
        "versions.postgres_image",
        "uses the 'latest' tag",
    ),
    (
        "image-without-tag",
        _set("versions.seaweedfs_image", "chrislusf/seaweedfs"),
        "versions.seaweedfs_image",
        "has no tag",
    ),
    (
        "image-registry-port-is-not-a-tag",
        _set("versions.postgres_image", "registry.local:5000/postgres"),
        "versions.postgres_image",
        "has no tag",
    ),
    ("bad-k3s-version", _set("versions.k3s", "1.31.4"), "versions.k3s", "'v1.31.4+k3s1'"),
    ("bad-metallb-version", _set("versions.metallb", "v0.13"), "versions.metallb", "v0.12.1"),
    # pinned shape, but not pinned in infra/upstream.yaml: refused at load, before the host is touched
    ("unpinned-metallb", _set("versions.metallb", "v0.13.0"), "versions.metallb", "v0.13.0 is not pinned in infra/"),
    ("unpinned-argocd", _set("versions.argocd", "v3.4.0"), "versions.argocd", "(pinned: v3.5.1, v3.2.0)"),
    ("unpinned-k3s", _set("versions.k3s", "v1.99.9+k3s1"), "versions.k3s", "(pinned: v1.31.4+k3s1)"),
    ("rows-over-limit", _set("ml.max_batch_rows", 10), "ml.batch_rows", "300 is over ml.max_batch_rows (10)"),
    (
        "k3s-source-url-with-credentials",
        _set("ml.source_url", "https://reader:s3cret@batches.example/api"),
        "ml.source_url",
        "carries credentials",
    ),
    # --- alerts / freshness ---
    (
        "webhook-not-a-url",
        _set("alerts.webhook_url", "not a url"),
        "alerts.webhook_url",
        "valid URL",
    ),
    ("timeout-zero", _set("alerts.timeout_seconds", 0), "alerts.timeout_seconds", "greater than 0"),
    ("retries-bool", _set("alerts.retries", True), "alerts.retries", "valid integer"),
    ("freshness-zero", _set("freshness.data_minutes", 0), "freshness.data_minutes", "greater than 0"),
]


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_config_names_the_field(mutate: Mutation, path: str, fragment: str) -> None:
    cfg = valid()
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        parse_config(cfg, source="platform.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"platform.yaml: {path}: "), message
    assert info.value.path == path
    assert fragment in message, message
    assert not message.endswith("more)"), "each case should break exactly one rule"


def test_malformed_table_is_large_enough() -> None:
    ids = [case[0] for case in MALFORMED]
    assert len(ids) >= 24 and len(set(ids)) == len(ids)


def test_shipped_platform_yaml_loads_with_defaults() -> None:
    config = load_config(REPO_CONFIG)
    assert config.target == "local"
    assert config.network is None
    assert config == parse_config({})  # the shipped file spells out the defaults


def test_seed_fixed_network_validates() -> None:
    config = parse_config(valid())
    net = config.network
    assert net is not None
    assert net.host_ip == IPv4Address("10.43.100.94")
    assert net.pod_cidr == IPv4Network("10.44.0.0/16")
    assert net.service_cidr == IPv4Network("10.45.0.0/16")
    assert net.cluster_dns == IPv4Address("10.45.0.10")
    assert net.pool_range == (IPv4Address("10.43.100.200"), IPv4Address("10.43.100.220"))


def test_metallb_pool_as_cidr() -> None:
    cfg = valid()
    cfg["network"]["metallb_pool"] = "10.43.100.224/28"
    net = parse_config(cfg).network
    assert net is not None
    assert net.pool_range == (IPv4Address("10.43.100.224"), IPv4Address("10.43.100.239"))


def test_defaults() -> None:
    config = parse_config({})
    assert config.target == "local"
    assert config.state_dir == ".platform"
    assert config.host.address == "127.0.0.1" and config.host.ssh_port == 22
    assert config.host.os_family == "auto"
    assert config.versions.k3s == "v1.31.4+k3s1"
    assert config.versions.postgres_image == "postgres:13-alpine"
    assert config.versions.metallb_mode == "configmap"
    assert [(b.name, b.owner) for b in config.buckets] == [
        ("mlflow-artifacts", "mlflow"),
        ("datasets", "ml"),
        ("predictions", "ml"),
        ("reports", "ml"),
    ]
    assert [(d.name, d.owner) for d in config.databases] == [
        ("mlflow", "mlflow"),
        ("mldata", "ml"),
        ("dagster", "dagster"),
    ]
    assert (config.orchestrator.database, config.services.dagster.webserver_port) == ("dagster", 3000)
    assert config.mlflow.experiment == "housing-prices"
    assert config.alerts.webhook_url is None
    assert (config.alerts.timeout_seconds, config.alerts.retries) == (5, 3)
    assert config.alerts.backoff_seconds == 0.5
    assert config.freshness.model_minutes == 10080
    assert config.identities == ["ml", "mlflow", "readonly"]
    assert config.bucket("datasets").owner == "ml"
    with pytest.raises(KeyError):
        config.bucket("nope")
    assert config.all_ports() == {
        "services.postgres.port": 55432,
        "services.seaweedfs.master_port": 9333,
        "services.seaweedfs.volume_port": 8080,
        "services.seaweedfs.filer_port": 8888,
        "services.seaweedfs.s3_port": 8333,
        "services.mlflow.port": 5000,
        "services.inference.port": 8000,
        "services.data_api.port": 8001,
        "services.dagster.webserver_port": 3000,
        "services.dagster.platform_code_port": 4000,
        "services.dagster.ml_code_port": 4001,
    }


def test_metallb_mode_crd_from_v0_13() -> None:
    assert parse_config({"versions": {"metallb": "v0.15.3"}}).versions.metallb_mode == "crd"


def test_image_pinned_by_digest_is_accepted() -> None:
    image = "postgres@sha256:" + "a" * 64
    assert parse_config({"versions": {"postgres_image": image}}).versions.postgres_image == image


def test_models_are_frozen() -> None:
    config = parse_config({})
    with pytest.raises(ValidationError):
        config.target = "k3s"  # type: ignore[misc]


def test_ssh_user_only_needed_for_remote_k3s() -> None:
    assert parse_config({"host": {"address": "10.0.0.5"}}).host.ssh_user is None
    cfg = valid()
    cfg["host"] = {"address": "localhost"}
    assert parse_config(cfg).target == "k3s"


def test_seed_clash_proposal_is_free_and_works() -> None:
    cfg = valid()
    for key in ("pod_cidr", "service_cidr", "cluster_dns"):
        del cfg["network"][key]
    with pytest.raises(ConfigError) as info:
        parse_config(cfg)
    assert str(info.value).startswith("<config>: network.service_cidr: host_ip 10.43.100.94 is inside service_cidr")
    match = re.search(r"such as (\S+) with cluster_dns (\S+)", str(info.value))
    assert match, str(info.value)
    proposal = IPv4Network(match[1])
    assert proposal.prefixlen == 16
    for taken in ("10.43.100.0/24", "10.42.0.0/16"):  # host subnet, default pods
        assert not proposal.overlaps(IPv4Network(taken))
    for address in ("10.43.100.94", "10.43.100.200", "10.43.100.220"):
        assert IPv4Address(address) not in proposal
    cfg["network"].update(service_cidr=match[1], cluster_dns=match[2])
    assert parse_config(cfg).network is not None


def test_several_errors_report_the_first_and_count_the_rest() -> None:
    cfg = {"target": "k8s", "services": {"mlflow": {"port": "5000"}}}
    with pytest.raises(ConfigError) as info:
        parse_config(cfg)
    assert str(info.value).startswith("<config>: target: ")
    assert str(info.value).endswith("(+1 more)")


def test_long_bad_values_are_shortened() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"state_dir": ["x" * 500]})
    assert len(str(info.value)) < 200


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_load_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text("target: local\nservices: [\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: line ")
    assert "\n" not in str(info.value)


def test_load_yaml_list(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text("- target: local\n")
    with pytest.raises(ConfigError, match="top level must be a mapping") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_load_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text("target: local\nservices: {}\ntarget: k3s\n")
    with pytest.raises(ConfigError, match="duplicate key 'target'") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: line 3")


def test_load_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text("# nothing set\n")
    assert load_config(str(path)) == parse_config({})


def test_load_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text("services:\n  mlflow:\n    port: 8333\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}: services.mlflow.port: port 8333 is already used by services.seaweedfs.s3_port")
