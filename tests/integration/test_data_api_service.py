"""The offline data API as a supervised process: started, left alone when unchanged, read through the client."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_assets.data.service import DataApiResource
from ml_assets.data.source import SourceError, source_for
from ml_assets.data.validation import validate_batch
from ml_assets.schema import COLUMNS
from tests.stacks import write_stack_config

pytestmark = pytest.mark.integration


@pytest.fixture
def data_api(tmp_path: Path, request: pytest.FixtureRequest) -> DataApiResource:
    config_path = write_stack_config(tmp_path)
    resource = DataApiResource(config_path=str(config_path), state_dir=str(tmp_path / "state"))
    spec = resource.service_spec()
    request.addfinalizer(lambda: resource.supervisor.stop(spec.name, spec.stop_signal, spec.stop_timeout))
    return resource


def test_supervised_data_api_serves_batches(data_api: DataApiResource) -> None:
    cfg = data_api.cfg
    first = data_api.ensure_server()
    assert first.action == "started"
    assert data_api.ensure_server().action == "unchanged"
    port = cfg.services.data_api.port
    assert data_api.url == f"http://127.0.0.1:{port}"
    assert data_api.supervisor.listen_addresses("data_api") == {("127.0.0.1", port)}  # loopback only

    source = source_for(cfg)
    assert source.base_url == data_api.url and source.group_number == cfg.ml.group_number
    batch = source.fetch_batch(cfg.ml.batches - 1)
    assert (batch.day, batch.batch_number, len(batch.frame)) == (cfg.ml.batches - 1, cfg.ml.batches - 1, 300)
    assert {c: str(t) for c, t in batch.frame.dtypes.items()} == COLUMNS
    assert validate_batch(batch.frame).passed
    with pytest.raises(SourceError, match=rf"day {cfg.ml.batches} .*HTTP 404"):
        source.fetch_batch(cfg.ml.batches)

    assert data_api.set_drift("nulls", strength=2)["kind"] == "nulls"
    assert data_api.drift() == {"kind": "nulls", "strength": 2.0, "columns": None}
    holed = source.fetch_batch(0).frame
    assert holed["house_size"].isna().sum() == 180  # 0.6 * 300
    report = validate_batch(holed)
    assert {("house_size", "nulls"), ("bath", "nulls")} <= {(p.column, p.rule) for p in report.problems}
    with pytest.raises(ValueError, match="refused drift"):
        data_api.set_drift("earthquake")
    data_api.set_drift("none")
    assert validate_batch(source.fetch_batch(0).frame).passed
    assert data_api.ensure_server().pid == first.pid  # drift is runtime state, not config: no restart
