"""The main job end to end: the CLI runs it on the Dagster instance in PostgreSQL."""

import psycopg2
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def query(address, sql: str, database: str | None = None):
    with psycopg2.connect(address.libpq_url(database)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def successful_runs(address) -> int:
    if not query(address, "select to_regclass('public.runs') is not null", "dagster")[0][0]:
        return 0
    return query(address, "select count(*) from runs where pipeline_name = 'refresh_all'"
                          " and status = 'SUCCESS'", "dagster")[0][0]


def test_materialize_fills_the_marts_and_is_idempotent(warehouse, dbt_manifest):
    runs_before = successful_runs(warehouse)
    versions = []
    for attempt in (1, 2):
        result = run_cli("materialize")
        assert "[3/3] materialize every asset" in result.stdout
        assert query(warehouse, "select count(*), count(distinct city)"
                                " from marts.city_fiscal_years") == [(1841, 477)], attempt
        versions.append(query(warehouse, "select count(*) from raw.fiscal_entries")[0][0])
    assert versions[0] == versions[1], "a second run of unchanged data adds no version"
    assert successful_runs(warehouse) == runs_before + 2
    # Scores for every city-year, projections for every projectable city, a report each.
    assert query(warehouse, "select count(*), count(distinct city) from marts.city_risk_scores"
                 ) == [(1841, 477)]
    assert query(warehouse, "select count(distinct city), count(*)"
                            " from marts.city_forecast_summary") == [(476, 3 * 476)]
    assert query(warehouse, "select count(distinct city) from ops.refresh_operations"
                            " where status = 'success'")[0][0] == 477
    # The real data set validates with no error; its oddities are warnings.
    severities = dict(query(warehouse, "select severity, count(*)"
                                       " from marts.fiscal_validation_issues group by 1"))
    assert "error" not in severities and severities["warning"] > 0
