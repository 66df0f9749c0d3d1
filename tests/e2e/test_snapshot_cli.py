"""`refresh-assets snapshot`: the daily-partitioned Dagster asset takes a day's snapshot
through dbt (the day passed as a var), a second take of the day replaces it, and the
backtest is rebuilt after it."""

import dagster as dg
import psycopg2
import pytest

from refresh_assets.lib.database import warehouse_connection
from tests.conftest import run_cli
from tests.forecast_fixtures import dbt_build, projection_frames, store_projections

pytestmark = pytest.mark.e2e

CITY = "Snapshot Cli Test"
KEY = "snapshot-cli-test"
DAY = "2026-03-02"  # a day no other test snapshots, well inside the retention


def store_projection(address, fund_balance: float) -> None:
    """One projection run of the test city: one year, fund balance 2 below and above the
    base in the pessimistic and optimistic scenarios."""
    store_projections(address, f"snapshot-cli-{fund_balance}",
                      projection_frames(CITY, 2020, 100.0, 100.0, fund_balance, years=1))


def day_rows(address) -> list[tuple]:
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute("select scenario, fiscal_year, fund_balance, fund_balance_low,"
                    " fund_balance_high, run_id from marts.city_forecast_snapshots"
                    " where snapshot_date = %s and city_key = %s order by scenario", (DAY, KEY))
        return cur.fetchall()


@pytest.fixture
def test_city(warehouse, dbt_manifest, tmp_path):
    """The test city's projections, removed afterwards; the forecast views built, as any
    refresh leaves them."""
    def remove():
        with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
            for table in ("projection_years", "projection_summaries", "current_projections"):
                cur.execute(f"delete from analytics.{table} where city_key = %s", (KEY,))
            cur.execute("select to_regclass('marts.city_forecast_snapshots') is not null")
            if cur.fetchone()[0]:
                cur.execute("delete from marts.city_forecast_snapshots where city_key = %s",
                            (KEY,))

    dbt_build(tmp_path, "+city_forecast", "stg_analytics__validated_fiscal_data")
    yield
    remove()


def test_snapshot_takes_a_day_and_a_second_take_replaces_it(warehouse, test_city):
    store_projection(warehouse, 50.0)
    first = run_cli("snapshot", "--day", DAY, timeout=900)
    assert f"snapshot of {DAY} taken; marts.forecast_backtest rebuilt" in first.stdout
    rows = day_rows(warehouse)
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("base", 50.0, 48.0, 52.0), ("optimistic", 52.0, 48.0, 52.0),
        ("pessimistic", 48.0, 48.0, 52.0)]

    again = run_cli("snapshot", "--day", DAY, timeout=900)
    assert "day(s) kept" in again.stdout
    assert day_rows(warehouse) == rows  # nothing changed, so the day is the same

    store_projection(warehouse, 70.0)  # a new projection: a new take replaces the day
    run_cli("snapshot", "--day", DAY, timeout=900)
    assert [(r[0], r[2]) for r in day_rows(warehouse)] == [
        ("base", 70.0), ("optimistic", 72.0), ("pessimistic", 68.0)]

    with dg.DagsterInstance.get() as instance:
        key = dg.AssetKey(["marts", "city_forecast_snapshots"])
        assert DAY in instance.get_materialized_partitions(key)
        event = instance.get_latest_materialization_event(key)
        assert event.asset_materialization.partition == DAY
        assert event.asset_materialization.metadata["dagster/row_count"].value >= 3
