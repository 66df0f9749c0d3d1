"""`refresh-assets snapshot`: the daily-partitioned Dagster asset takes a day's snapshot
through dbt (the day passed as a var), a second take of the day replaces it, and the
backtest is rebuilt after it."""

import os
import subprocess

import dagster as dg
import pandas as pd
import psycopg2
import pytest

from refresh_assets.lib.analytics_store import append_projections
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.settings import DBT_PROJECT_DIR
from tests.conftest import VENV_BIN, run_cli

pytestmark = pytest.mark.e2e

CITY = "Snapshot Cli Test"
KEY = "snapshot-cli-test"
DAY = "2026-03-02"  # a day no other test snapshots, well inside the retention


def store_projection(address, fund_balance: float) -> None:
    """One projection run of the test city (one year, three scenarios)."""
    yearly = pd.DataFrame([
        {"city": CITY, "scenario": scenario, "base_year": 2020, "k": 1, "fiscal_year": 2021,
         "revenue": 100.0 + step, "expenditures": 100.0 - step, "pension_expenditures": 0.0,
         "fund_balance": fund_balance + 2 * step}
        for scenario, step in (("pessimistic", -1.0), ("base", 0.0), ("optimistic", 1.0))])
    summary = yearly.rename(columns={"fund_balance": "fund_balance_year_10"}).assign(
        revenue_base=100.0, expenditures_base=100.0, fund_balance_base=fund_balance,
        below_zero_at_base=False, cliff_year=None, reserve_breach_year=None, severity="none",
        gap_to_close=0.0, gap_share_of_expenditures=None, gap_share_of_revenue=None,
        g_city=None, n_rates=0, m_t0=None, g=None, s=0.01, phi=1.0, pension_base=0.0,
        pension_schedule_source="fallback_5pct", anchor=0.0, methodology_version="v1.1",
        entry_version=None)
    with warehouse_connection(address) as conn:
        append_projections(conn, f"snapshot-cli-{fund_balance}", yearly, summary)


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

    subprocess.run([str(VENV_BIN / "dbt"), "build", "--select", "+city_forecast",
                    "stg_analytics__validated_fiscal_data",
                    "--exclude-resource-type", "unit_test", "--project-dir", str(DBT_PROJECT_DIR),
                    "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(tmp_path)],
                   env=os.environ.copy(), check=True, capture_output=True, timeout=900)
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
