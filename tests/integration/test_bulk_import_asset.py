"""The Dagster asset fails with a clear message on bad input and keeps what was stored."""

import dagster as dg
import pytest

from refresh_assets.lib.database import warehouse_connection
from refresh_assets.settings import DATA_DIR

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def defs(dbt_manifest):
    from refresh_assets.definitions import defs

    return defs


def materialize_raw(defs, path=None):
    from refresh_assets.defs.fiscal import state_auditor_fiscal_inputs

    run_config = {}
    if path is not None:
        run_config = {"ops": {"raw__state_auditor_fiscal_inputs": {"config": {"path": str(path)}}}}
    return dg.materialize(
        [state_auditor_fiscal_inputs],
        resources=defs.resources,
        run_config=run_config,
        raise_on_error=False,
    )


def test_the_asset_loads_and_reports_metadata(defs, warehouse):
    result = materialize_raw(defs)
    assert result.success
    metadata = result.asset_materializations_for_node("raw__state_auditor_fiscal_inputs")[0].metadata
    assert metadata["dagster/row_count"].value == 1841
    assert metadata["cities"].value == 477


def test_a_malformed_file_fails_the_asset_naming_file_and_row(defs, warehouse, tmp_path):
    assert materialize_raw(defs).success
    bad = tmp_path / "bad.csv"
    lines = (DATA_DIR / "ca_city_fiscal_inputs.csv").read_text().splitlines()[:4]
    lines[2] = lines[2].replace("Adelanto", "", 1)
    bad.write_text("\n".join(lines) + "\n")
    result = materialize_raw(defs, bad)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert f"{bad}: line 3, field city: is required (empty)" in failure.message
    with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from raw.state_auditor_fiscal_inputs")
        assert cur.fetchone()[0] == 1841


def test_a_missing_file_fails_the_asset(defs, tmp_path):
    result = materialize_raw(defs, tmp_path / "gone.csv")
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "gone.csv: file not found" in failure.message
