"""The entries sensor on the real Dagster instance sees CalPERS valuation files: saving one
asks for a run of its city alone, naming the file; an unchanged one asks for nothing."""

import shutil

import dagster as dg
import pytest

from refresh_assets.settings import PROJECT_DIR
from tests.integration.test_entry_sensor import Sensor
from tests.unit.test_valuation_entries import NAME, VALID

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def instance(warehouse):
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture(scope="module")
def sensor(dbt_manifest):
    from refresh_assets.defs.sensors import entry_files_sensor

    return entry_files_sensor


def test_a_new_valuation_file_refreshes_its_city(sensor, instance, tmp_path):
    entries = tmp_path / "entries"
    shutil.copytree(PROJECT_DIR / "entries" / "vallejo", entries / "vallejo")
    watch = Sensor(sensor, instance, entries)
    watch.tick()

    (entries / "vallejo" / "calpers").mkdir()
    (entries / NAME).write_text(VALID)
    result, logged, _ = watch.tick()
    [request] = result.run_requests
    assert request.partition_key == "vallejo"
    assert request.tags["refresh/changed_files"] == NAME
    assert logged == []

    unchanged, _, _ = watch.tick()
    assert unchanged.run_requests == []
    (entries / NAME).write_text(VALID.replace("0.712", "0.72"))
    edited, _, _ = watch.tick()
    assert [r.partition_key for r in edited.run_requests] == ["vallejo"]
    assert edited.run_requests[0].run_key != request.run_key
