"""The code location loads, and Python and dbt assets form one lineage graph."""

import dagster as dg
import pytest

pytestmark = pytest.mark.integration

RAW = dg.AssetKey(["raw", "state_auditor_fiscal_inputs"])
STAGING = dg.AssetKey(["staging", "stg_state_auditor__fiscal_inputs"])
MART = dg.AssetKey(["marts", "city_fiscal_years"])


@pytest.fixture(scope="module")
def defs(dbt_manifest):
    from refresh_assets.definitions import defs

    return defs


def test_one_lineage_from_python_to_the_mart(defs):
    graph = defs.resolve_asset_graph()
    assert {RAW, STAGING, MART} <= set(graph.get_all_asset_keys())
    assert graph.get(MART).parent_keys == {STAGING}
    assert graph.get(STAGING).parent_keys == {RAW}
    # The raw table is the Python asset itself, not a separate dbt source node.
    assert graph.get(RAW).is_materializable
    assert graph.get(RAW).group_name == "ingestion"
    assert graph.get(MART).group_name == "marts"


def test_dbt_tests_are_asset_checks(defs):
    check_keys = defs.resolve_asset_graph().asset_check_keys
    on_mart = {key.name for key in check_keys if key.asset_key == MART}
    assert {"unique_city_fiscal_years_city_fiscal_year_id",
            "not_null_city_fiscal_years_city"} <= on_mart


def test_the_main_job_selects_every_asset(defs):
    job = defs.resolve_job_def("refresh_all")
    assert {RAW, STAGING, MART} <= set(job.asset_layer.executable_asset_keys)
