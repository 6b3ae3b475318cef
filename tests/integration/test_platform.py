"""The platform location against real local services: bring-up, idempotency, isolation, auth."""

from __future__ import annotations

import os
import stat

import dagster as dg
import psutil
import psycopg2
import pytest
from botocore.exceptions import ClientError

from platform_core.results import NO_CHANGE
from platform_core.services.seaweedfs import ADMIN, READONLY
from tests.secret_scan import generated_secrets, leaks, readable_places

pytestmark = pytest.mark.integration

SERVICES = {"postgres": "postgres_resource", "seaweedfs": "seaweedfs_resource", "mlflow": "mlflow_resource"}


def test_first_run_materializes_every_asset_and_passes_every_check(stack) -> None:
    report = stack.first_run
    assert report.status == "SUCCESS", report
    graph = stack.defs.resolve_asset_graph()
    # platform_up is every platform asset but the orchestrator's own (`platformctl up` starts those last)
    expected_assets = {
        k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name != "orchestrator"
    }
    assert set(report.changes) == expected_assets and "dagster_daemon" not in expected_assets
    expected_checks = {
        f"{key.asset_key.to_user_string()}:{key.name}"
        for key in graph.asset_check_keys
        if key.asset_key.to_user_string() in expected_assets
    }
    assert set(report.checks) == expected_checks
    assert report.failed_checks == []
    assert report.changes["postgres"].startswith("started")
    assert report.changes["buckets/datasets"] == "created"


def test_second_run_changes_nothing(stack) -> None:
    report = stack.materialize()
    assert report.status == "SUCCESS"
    assert report.failed_checks == []
    assert set(report.changes.values()) == {NO_CHANGE}, report.changes


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_listens_on_loopback_only(stack, service: str) -> None:
    resource = stack.resource(SERVICES[service])
    addresses = resource.supervisor.listen_addresses(service)
    assert addresses, f"{service} holds no listening socket"
    assert {ip for ip, _ in addresses} == {"127.0.0.1"}


def test_secrets_file_is_private_and_secrets_appear_nowhere_else(stack) -> None:
    state = stack.resource("postgres_resource").state
    assert stat.S_IMODE(os.stat(state.secrets_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state.secrets_file.parent).st_mode) == 0o700
    secrets = generated_secrets(state)
    places = readable_places(state, stack.instance)
    for key in stack.defs.resolve_asset_graph().get_all_asset_keys():
        for record in stack.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=20).records:
            places[f"metadata of {key.to_user_string()}"] = str(record.asset_materialization.metadata)
    supervisor = stack.resource("postgres_resource").supervisor
    for name in ("postgres", "seaweedfs", "mlflow"):
        for pid in supervisor.process_tree(name):
            places[f"argv of {name} pid {pid}"] = " ".join(psutil.Process(pid).cmdline())
    assert places and not leaks(places, secrets)


def test_s3_identities_are_confined_to_their_buckets(stack) -> None:
    s3 = stack.resource("seaweedfs_resource")
    ml, mlflow_id, readonly = s3.client("ml"), s3.client("mlflow"), s3.client(READONLY)
    ml.put_object(Bucket="datasets", Key="it/confined.txt", Body=b"rows")
    with pytest.raises(ClientError, match="AccessDenied"):
        ml.put_object(Bucket="mlflow-artifacts", Key="it/not-yours.txt", Body=b"x")
    with pytest.raises(ClientError, match="AccessDenied"):
        mlflow_id.get_object(Bucket="datasets", Key="it/confined.txt")
    assert readonly.get_object(Bucket="datasets", Key="it/confined.txt")["Body"].read() == b"rows"
    with pytest.raises(ClientError, match="AccessDenied"):
        readonly.delete_object(Bucket="datasets", Key="it/confined.txt")
    with pytest.raises(ClientError, match="AccessDenied"):
        ml.create_bucket(Bucket="not-declared")
    s3.client(ADMIN).delete_object(Bucket="datasets", Key="it/confined.txt")


def test_postgres_has_no_trust_and_roles_are_confined(stack) -> None:
    pg = stack.resource("postgres_resource")
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="postgres", password="")
    with pytest.raises(psycopg2.OperationalError, match="permission denied"), pg.connect("ml", dbname="mlflow"):
        pass
    assert pg.query("ml", "mldata", "select current_user") == [("ml",)]
    flags = pg.query(
        "postgres",
        "postgres",
        "select rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname in ('ml', 'mlflow')",
    )
    assert flags == [(False, False, False)] * 2


def test_mlflow_stores_runs_in_postgres_and_artifacts_in_s3(stack) -> None:
    mlflow = stack.resource("mlflow_resource")
    trip = mlflow.round_trip(stack.resource("seaweedfs_resource"))
    assert trip.artifact_key.startswith(f"{trip.experiment_id}/{trip.run_id}/")
    tables = stack.resource("postgres_resource").query(
        "mlflow", "mlflow", "select count(*) from information_schema.tables where table_name = 'runs'"
    )
    assert tables == [(1,)]
