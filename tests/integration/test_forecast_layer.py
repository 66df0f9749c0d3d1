"""The forecast layer on the real test server, built by dbt as the assets build it: daily
snapshots (idempotent days, retention, checked vars), the backtest from stored snapshots,
the aggregates refreshed concurrently under a reader, views replaced in place so their
dependents survive, the BI role reading all of it, and each forecast row's methodology and
band quantiles."""

import json
import os
import re
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import errors, sql

from refresh_assets.lib.database import connect, warehouse_connection
from refresh_assets.settings import DBT_PROJECT_DIR, PROJECT_DIR
from tests.conftest import VENV_BIN, run_cli
from tests.forecast_fixtures import METHOD, dbt_build, projection_frames, store_projections

pytestmark = pytest.mark.integration

# Cities, runs and method of this file only: other tests share the warehouse, and the real
# data set has no such key. Every row with this key prefix is removed before and after each
# test.
PREFIX = "forecast-test-"
AGGREGATES = ("forecast_cliff_aggregates", "forecast_fiscal_year_aggregates",
              "risk_level_aggregates")
SNAPSHOT_COLUMNS = (
    "snapshot_date", "city_key", "city", "scenario", "base_year", "years_ahead", "fiscal_year",
    "revenue", "revenue_low", "revenue_high", "expenditures", "expenditures_low",
    "expenditures_high", "fund_balance", "fund_balance_low", "fund_balance_high", "cliff_year",
    "severity", "base_year_revenue", "base_year_expenditures", "base_year_fund_balance",
    "methodology_version", "run_id", "projected_at")


def built_models(target: Path) -> dict[str, str]:
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {r["unique_id"]: r["status"] for r in results if r["unique_id"].startswith("model.")}


def query(address, statement, params=None) -> list[tuple]:
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


def utc_today(address) -> date:
    return query(address, "select (now() at time zone 'utc')::date")[0][0]


def delete_test_rows(address) -> None:
    like = PREFIX + "%"
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        for table in ("analytics.current_projections", "analytics.projection_years",
                      "analytics.projection_summaries", "analytics.validated_fiscal_data"):
            cur.execute(f"delete from {table} where city_key like %s", (like,))
        cur.execute("select to_regclass('marts.city_forecast_snapshots') is not null")
        if cur.fetchone()[0]:
            cur.execute("delete from marts.city_forecast_snapshots where city_key like %s", (like,))


@pytest.fixture(scope="module")
def forecast_layer(warehouse, dbt_manifest, tmp_path_factory):
    """The forecast layer built once (every model it needs, with their data tests); at the
    end, this file's rows removed and the marts that copy them rebuilt without them."""
    delete_test_rows(warehouse)
    dbt_build(tmp_path_factory.mktemp("forecast_layer"),
              "+city_forecast", "+forecast_backtest", *(f"+{name}" for name in AGGREGATES))
    yield warehouse
    delete_test_rows(warehouse)
    dbt_build(tmp_path_factory.mktemp("forecast_layer_after"), "forecast_backtest",
              "city_forecast_summary", *AGGREGATES)


@pytest.fixture
def address(forecast_layer):
    """The warehouse, without this file's rows before and after the test."""
    delete_test_rows(forecast_layer)
    yield forecast_layer
    delete_test_rows(forecast_layer)


def snapshot_rows(address, *days: date) -> list[tuple]:
    """Every column of this file's snapshot rows of the given days, in a fixed order."""
    return query(address, sql.SQL(
        "select {} from marts.city_forecast_snapshots where city_key like %s"
        " and snapshot_date = any(%s) order by snapshot_date, city_key, scenario, fiscal_year"
    ).format(sql.SQL(", ").join(map(sql.Identifier, SNAPSHOT_COLUMNS))),
        (PREFIX + "%", list(days)))


def insert_snapshot_rows(address, rows: list[dict]) -> None:
    """Rows written straight into the snapshots table (days no schedule took)."""
    defaults = {"scenario": "base", "methodology_version": METHOD, "run_id": "forecast-test-run",
                "severity": "none", "projected_at": "2025-11-30 12:00:00+00"}
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        for row in rows:
            row = {**defaults, **row}
            cur.execute(sql.SQL("insert into marts.city_forecast_snapshots ({}) values ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, row)),
                sql.SQL(", ").join(sql.Placeholder() * len(row))), list(row.values()))


def relation_oids(address, *names: str) -> dict[str, int | None]:
    return {name: query(address, "select to_regclass(%s)::oid", (name,))[0][0] for name in names}


# a. The same day snapshotted twice gives the same rows; other days are untouched.

def test_a_day_snapshotted_twice_keeps_one_identical_copy_and_other_days_stay(
        address, tmp_path, request):
    today = utc_today(address)
    earlier, day = today - timedelta(days=11), today - timedelta(days=10)
    # Both days are this test's: the other cities' rows of them go too.
    request.addfinalizer(lambda: query(
        address, "delete from marts.city_forecast_snapshots where snapshot_date in (%s, %s)",
        (earlier, day)))
    alpha, beta = "Forecast Test Alpha", "Forecast Test Beta"
    store_projections(address, "forecast-test-run-1",
                      projection_frames(alpha, 2024, 1000.0, 900.0, 100.0),
                      projection_frames(beta, 2024, 500.0, 520.0, 40.0))
    dbt_build(tmp_path / "earlier", "city_forecast_snapshots", dbt_vars={"snapshot_date": str(earlier)})
    earlier_rows = snapshot_rows(address, earlier)
    # 2 cities x 3 scenarios x 3 years, all of run 1.
    assert len(earlier_rows) == 18
    assert {(r[1], r[22]) for r in earlier_rows} == {
        ("forecast-test-alpha", "forecast-test-run-1"), ("forecast-test-beta", "forecast-test-run-1")}

    # Alpha projected again, with other figures: the day snapshotted after sees run 2.
    store_projections(address, "forecast-test-run-2",
                      projection_frames(alpha, 2024, 2000.0, 1800.0, 200.0))
    dbt_build(tmp_path / "first", "city_forecast_snapshots", dbt_vars={"snapshot_date": str(day)})
    first = snapshot_rows(address, day)
    # A stray row of the day (a city since dropped from the forecast): the rerun replaces
    # the whole day, so it goes.
    insert_snapshot_rows(address, [{"snapshot_date": day, "city_key": PREFIX + "stray",
                                    "city": "Forecast Test Stray", "fiscal_year": 2025}])
    dbt_build(tmp_path / "again", "city_forecast_snapshots", dbt_vars={"snapshot_date": str(day)})
    again = snapshot_rows(address, day)

    assert len(first) == 18  # one copy of the day, not two
    assert again == first  # every column of every row, projected_at included
    assert {(r[1], r[22]) for r in first} == {
        ("forecast-test-alpha", "forecast-test-run-2"), ("forecast-test-beta", "forecast-test-run-1")}
    alpha_base_first_year = [r for r in first if r[1] == "forecast-test-alpha"
                             and r[3] == "base" and r[5] == 1]
    # revenue 2000 + 2, band from the pessimistic 2001 to the optimistic 2003.
    assert [r[7:10] for r in alpha_base_first_year] == [(2002.0, 2001.0, 2003.0)]
    # The other day kept run 1's figures, through both reruns of the later day.
    assert snapshot_rows(address, earlier) == earlier_rows


# b. Retention deletes exactly the days beyond it; bad vars fail and lose nothing.

def store_one_projected_city(address) -> None:
    """marts.city_forecast with at least one city, whatever the other tests left, so a day's
    snapshot has rows to compare."""
    store_projections(address, "forecast-test-run-projected",
                      projection_frames("Forecast Test Projected", 2024, 100.0, 90.0, 10.0))


def test_retention_deletes_exactly_the_days_older_than_the_window(address, tmp_path):
    store_one_projected_city(address)
    today = utc_today(address)
    city_key, city = PREFIX + "retention", "Forecast Test Retention"
    kept_before = {today - timedelta(days=n) for n in (5, 3, 2, 1)}
    insert_snapshot_rows(address, [
        {"snapshot_date": d, "city_key": city_key, "city": city, "fiscal_year": 2025,
         "revenue": 1.0, "fund_balance": 1.0, "fund_balance_low": 0.0, "fund_balance_high": 2.0}
        for d in sorted(kept_before | {today})])

    dbt_build(tmp_path, "city_forecast_snapshots",
              dbt_vars={"snapshot_date": str(today), "snapshot_retention_days": 2})

    days = {d for (d,) in query(address, "select snapshot_date from marts.city_forecast_snapshots"
                                         " where city_key = %s", (city_key,))}
    # today - 5 and today - 3 are older than today - 2: deleted. today - 2 (the edge) and
    # today - 1 stay. Today's row was replaced by today's snapshot (which has no such city).
    assert days == {today - timedelta(days=2), today - timedelta(days=1)}
    # No other city keeps an older day either.
    oldest = query(address, "select min(snapshot_date) from marts.city_forecast_snapshots")[0][0]
    assert oldest >= today - timedelta(days=2)
    # Today's snapshot was taken: the forecast as it stands, the projected city's 9 rows in it.
    assert query(address, "select count(*) from marts.city_forecast_snapshots"
                          " where snapshot_date = %s", (today,))[0][0] == query(
        address, "select count(*) from marts.city_forecast")[0][0]
    assert query(address, "select count(*) from marts.city_forecast_snapshots"
                          " where snapshot_date = %s and city_key = %s",
                 (today, "forecast-test-projected")) == [(9,)]


def all_snapshot_rows(address) -> list[tuple]:
    return query(address, "select * from marts.city_forecast_snapshots"
                          " order by snapshot_date, city, scenario, fiscal_year")


@pytest.mark.parametrize(("dbt_vars", "env", "message"), [
    ({"snapshot_retention_days": "two"}, {},
     "FORECAST_SNAPSHOT_RETENTION_DAYS (var snapshot_retention_days): expected a whole number "
     "of days of at least 1, got 'two'"),
    ({"snapshot_retention_days": 0}, {},
     "FORECAST_SNAPSHOT_RETENTION_DAYS (var snapshot_retention_days): expected a whole number "
     "of days of at least 1, got '0'"),
    # The variable itself, as dbt run by hand reads it.
    ({}, {"FORECAST_SNAPSHOT_RETENTION_DAYS": "-5"},
     "FORECAST_SNAPSHOT_RETENTION_DAYS (var snapshot_retention_days): expected a whole number "
     "of days of at least 1, got '-5'"),
    ({"snapshot_date": "23/11/2026"}, {},
     "var snapshot_date: expected a day as YYYY-MM-DD, got '23/11/2026'"),
])
def test_a_bad_snapshot_var_fails_the_build_naming_it_and_loses_nothing(
        address, tmp_path, dbt_vars, env, message):
    store_one_projected_city(address)
    today = utc_today(address)
    city_key, city = PREFIX + "bad-vars", "Forecast Test Bad Vars"
    # Rows of an old day (a retention of 1 would delete it) and of today (re-taking today
    # would replace it: this city has no projection).
    insert_snapshot_rows(address, [
        {"snapshot_date": d, "city_key": city_key, "city": city, "fiscal_year": 2025}
        for d in (today - timedelta(days=400), today)])
    before = all_snapshot_rows(address)

    vars_with_day = {"snapshot_date": str(today), **dbt_vars}
    result = dbt_build(tmp_path, "city_forecast_snapshots", dbt_vars=vars_with_day, env=env,
                       check=False)
    assert result.returncode != 0
    # dbt may wrap the message over lines: compare with the whitespace collapsed.
    assert message in re.sub(r"\s+", " ", result.stdout), result.stdout
    assert all_snapshot_rows(address) == before


# c. The backtest over stored snapshots against later actuals, by hand.

BACKTEST_DAY_1, BACKTEST_DAY_2 = date(2025, 12, 1), date(2025, 12, 2)
A, B = (PREFIX + "backtest-a", "Forecast Test Backtest A"), (PREFIX + "backtest-b",
                                                             "Forecast Test Backtest B")


def forecast(day, city, fiscal_year, revenue, expenditures, fund_balance, base, scenario="base"):
    """A snapshot row: each measure as (forecast, band low, band high); base = the base
    year's actuals (revenue, expenditures, fund balance), base year 2023."""
    return {"snapshot_date": day, "city_key": city[0], "city": city[1], "scenario": scenario,
            "base_year": 2023, "years_ahead": fiscal_year - 2023, "fiscal_year": fiscal_year,
            "revenue": revenue[0], "revenue_low": revenue[1], "revenue_high": revenue[2],
            "expenditures": expenditures[0], "expenditures_low": expenditures[1],
            "expenditures_high": expenditures[2], "fund_balance": fund_balance[0],
            "fund_balance_low": fund_balance[1], "fund_balance_high": fund_balance[2],
            "base_year_revenue": base[0], "base_year_expenditures": base[1],
            "base_year_fund_balance": base[2]}


def actual(city, fiscal_year, revenue, expenditures, fund_balance):
    return {"city_key": city[0], "city": city[1], "fiscal_year": fiscal_year,
            "gf_revenues": revenue, "gf_expenditures_and_transfers_out": expenditures,
            "gf_unrestricted_fund_balance": fund_balance, "entry_version": -1,
            "source_kind": "entry_file", "source_path": f"{city[0]}/{fiscal_year}.yaml"}


def test_the_backtest_scores_stored_snapshots_against_later_actuals(address, tmp_path):
    base_a, base_b = (100, 100, 20), (280, 210, -10)
    insert_snapshot_rows(address, [
        # Day 1, city A: the base year itself (never judged), years 1 and 2 ahead, and an
        # optimistic row (only the base scenario is judged).
        forecast(BACKTEST_DAY_1, A, 2023, (999, 999, 999), (999, 999, 999), (999, 999, 999), base_a),
        forecast(BACKTEST_DAY_1, A, 2024, (110, 100, 120), (105, 100, 112), (25, 10, 40), base_a),
        forecast(BACKTEST_DAY_1, A, 2025, (120, 105, 130), (110, 100, 120), (30, 5, 50), base_a),
        forecast(BACKTEST_DAY_1, A, 2024, (120, 100, 120), (100, 100, 112), (40, 10, 40), base_a,
                 scenario="optimistic"),
        # Day 1, city B: 2025 has no actual yet.
        forecast(BACKTEST_DAY_1, B, 2024, (290, 250, 295), (220, 215, 230), (-40, -60, -20), base_b),
        forecast(BACKTEST_DAY_1, B, 2025, (300, 280, 320), (230, 220, 240), (-70, -90, -50), base_b),
        # Day 2: city A only, one year ahead.
        forecast(BACKTEST_DAY_2, A, 2024, (104, 96, 108), (110, 100, 120), (10, 0, 20), base_a),
    ])
    actuals = [actual(A, 2023, 100, 100, 20), actual(A, 2024, 100, 110, 10),
               actual(A, 2025, 125, None, 0),  # 2025's expenditures not reported
               actual(B, 2024, 300, 200, -20)]
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        for row in actuals:
            cur.execute(sql.SQL("insert into analytics.validated_fiscal_data ({}) values ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, row)),
                sql.SQL(", ").join(sql.Placeholder() * len(row))), list(row.values()))

    dbt_build(tmp_path, "forecast_backtest")

    columns = ("forecasts", "wape", "bias", "band_coverage", "persistence_wape",
               "persistence_bias", "beats_persistence", "actuals_in_band")
    rows = query(address, sql.SQL(
        "select snapshot_date, measure, years_ahead, {} from marts.forecast_backtest"
        " where methodology_version = %s and snapshot_date in (%s, %s)").format(
        sql.SQL(", ").join(map(sql.Identifier, columns))), (METHOD, BACKTEST_DAY_1, BACKTEST_DAY_2))
    got = {(r[0], r[1], r[2]): dict(zip(columns, r[3:], strict=True)) for r in rows}

    def expect(forecasts, wape, bias, coverage, p_wape, p_bias, beats, in_band):
        return {"forecasts": forecasts, "wape": wape, "bias": bias, "band_coverage": coverage,
                "persistence_wape": p_wape, "persistence_bias": p_bias,
                "beats_persistence": beats, "actuals_in_band": in_band}

    expected = {
        # Revenue 1 year ahead: A 110 vs 100 (band 100-120: in, on its edge), B 290 vs 300
        # (band 250-295: out). |errors| 10 + 10 = 20, errors +10 - 10 = 0, Σ|A| = 400.
        # Persistence: A 100 vs 100 = 0, B 280 vs 300 = -20: 20 / 400, bias -20 / 400. The
        # forecasts' 20 does not beat persistence's 20.
        (BACKTEST_DAY_1, "revenue", 1): expect(2, 20 / 400, 0 / 400, 1 / 2, 20 / 400, -20 / 400,
                                               False, 1),
        # Revenue 2 years ahead: A only (B's 2025 not validated): 120 vs 125, in 105-130.
        # Persistence 100 vs 125: 25 / 125.
        (BACKTEST_DAY_1, "revenue", 2): expect(1, 5 / 125, -5 / 125, 1.0, 25 / 125, -25 / 125,
                                               True, 1),
        # Expenditures 1 year ahead: A 105 vs 110 (in 100-112), B 220 vs 200 (out of 215-230).
        # |errors| 5 + 20 = 25, errors -5 + 20 = 15, Σ|A| = 310; persistence A 100 vs 110,
        # B 210 vs 200: |10| + |10| = 20, bias -10 + 10 = 0.
        (BACKTEST_DAY_1, "expenditures", 1): expect(2, 25 / 310, 15 / 310, 1 / 2, 20 / 310,
                                                    0 / 310, False, 1),
        # (No expenditures 2 years ahead: A's 2025 expenditures are missing.)
        # Fund balance 1 year ahead: A 25 vs 10 (in 10-40), B -40 vs -20 (in -60 to -20).
        # |errors| 15 + 20 = 35, errors 15 - 20 = -5, Σ|A| = 10 + 20 = 30; persistence A 20 vs
        # 10, B -10 vs -20: |10| + |10| = 20, bias +10 + 10 = 20.
        (BACKTEST_DAY_1, "fund_balance", 1): expect(2, 35 / 30, -5 / 30, 1.0, 20 / 30, 20 / 30,
                                                    False, 2),
        # Fund balance 2 years ahead: A 30 vs 0, out of 5-50. Σ|A| = 0: no WAPE or bias.
        # Persistence's error 20 beats the forecast's 30.
        (BACKTEST_DAY_1, "fund_balance", 2): expect(1, None, None, 0.0, None, None, False, 0),
        # Day 2, A one year ahead: revenue 104 vs 100 (in 96-108), persistence exact.
        (BACKTEST_DAY_2, "revenue", 1): expect(1, 4 / 100, 4 / 100, 1.0, 0 / 100, 0 / 100,
                                               False, 1),
        # Expenditures 110 vs 110: exact, persistence 100 vs 110 is 10 / 110 off.
        (BACKTEST_DAY_2, "expenditures", 1): expect(1, 0.0, 0.0, 1.0, 10 / 110, -10 / 110,
                                                    True, 1),
        # Fund balance 10 vs 10: exact, persistence 20 vs 10 is 10 / 10 off.
        (BACKTEST_DAY_2, "fund_balance", 1): expect(1, 0.0, 0.0, 1.0, 10 / 10, 10 / 10, True, 1),
    }
    assert set(got) == set(expected)
    for key, figures in expected.items():
        # No WAPE without actuals: those stay null, whatever the floating point.
        assert {k for k, v in got[key].items() if v is None} == {
            k for k, v in figures.items() if v is None}, key
        numbers = {k: v for k, v in figures.items() if v is not None}
        assert {k: got[key][k] for k in numbers} == pytest.approx(numbers, rel=1e-12, abs=1e-15), key


# d. Readers keep reading while the aggregates refresh concurrently.

def test_a_reader_in_an_open_transaction_keeps_reading_while_the_aggregates_refresh(
        address, tmp_path):
    city = "Forecast Test Delta"
    county = "Forecast Test County"
    store_projections(address, "forecast-test-run-delta",
                      projection_frames(city, 2024, 300.0, 320.0, 5.0))
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute("insert into analytics.validated_fiscal_data (city_key, city, county,"
                    " fiscal_year, entry_version, source_kind, source_path)"
                    " values (%s, %s, %s, 2024, -1, 'entry_file', 'forecast-test')",
                    (PREFIX + "delta", city, county))
    aggregate = "marts.forecast_fiscal_year_aggregates"
    count_county = f"select count(*) from {aggregate} where geography = %s"

    reader = connect(address)
    try:
        with reader.cursor() as cur:  # psycopg2 opens a transaction with the first query
            cur.execute(count_county, (county,))
            assert cur.fetchone() == (0,)  # not refreshed since the city was projected
            assert reader.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS

            # The reader's lock is one a plain refresh would wait for: it gives up here.
            blocked = connect(address)
            try:
                with blocked.cursor() as other, pytest.raises(errors.LockNotAvailable):
                    other.execute("set lock_timeout = '1s'")
                    other.execute(f"refresh materialized view {aggregate}")
            finally:
                blocked.close()

            # dbt, with the same lock timeout a plain refresh would fail on, while the reader
            # keeps querying in its transaction (each read must return within 5 s).
            target = tmp_path / "dbt"
            command = [str(VENV_BIN / "dbt"), "build", "--project-dir", str(DBT_PROJECT_DIR),
                       "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target),
                       "--log-path", str(target / "logs"), "--no-use-colors", "--debug",
                       "--exclude-resource-type", "unit_test",
                       "--select", "forecast_fiscal_year_aggregates"]
            env = {**os.environ, "PGOPTIONS": "-c lock_timeout=20s"}
            cur.execute("set local statement_timeout = '5s'")
            reads = 0
            stdout = tmp_path / "dbt.out"
            with stdout.open("w") as out, subprocess.Popen(
                    command, cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT) as dbt:
                deadline = time.monotonic() + 900
                while dbt.poll() is None and time.monotonic() < deadline:
                    cur.execute(f"select count(*) from {aggregate}")
                    cur.fetchone()
                    reads += 1
                    time.sleep(0.2)
                if dbt.poll() is None:
                    dbt.kill()
                dbt.wait()
            output = stdout.read_text()
            assert dbt.returncode == 0, output[-3000:]
            assert reads > 0
            # Still the same transaction, and it reads the refreshed rows.
            assert reader.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
            cur.execute(count_county, (county,))
            # One row per projected year (3) and scenario (3) for the county.
            assert cur.fetchone() == (9,)
        reader.rollback()
    finally:
        reader.close()

    log = (target / "logs" / "dbt.log").read_text() + output
    assert re.search(r'refresh materialized view concurrently\s+("warehouse"\.)?"marts"\.'
                     r'"forecast_fiscal_year_aggregates"', log, re.IGNORECASE), output[-3000:]
    # And no plain refresh statement (dbt's own status lines say "REFRESH MATERIALIZED VIEW").
    assert not re.search(r"^\s*refresh materialized view (?!concurrently)", log, re.MULTILINE)
    assert built_models(target) == {"model.refresh_assets.forecast_fiscal_year_aggregates": "success"}


# e. Views are replaced in place: their dependents keep their identity.

def test_rebuilding_upstream_views_keeps_the_dependent_views_and_materialized_views(
        address, tmp_path):
    store_projections(address, "forecast-test-run-echo",
                      projection_frames("Forecast Test Echo", 2024, 700.0, 650.0, 80.0))
    dependents = ["marts.city_forecast_v1", *(f"marts.{name}" for name in AGGREGATES)]
    rebuilt = ["marts.city_forecast", "staging.stg_analytics__projection_years"]
    before = relation_oids(address, *dependents, *rebuilt)
    assert None not in before.values(), before

    dbt_build(tmp_path, "city_forecast.v2", "stg_analytics__projection_years", debug=True)

    assert built_models(tmp_path) == {"model.refresh_assets.city_forecast.v2": "success",
                                      "model.refresh_assets.stg_analytics__projection_years": "success"}
    log = (tmp_path / "logs" / "dbt.log").read_text()
    assert len(re.findall(r"create or replace view", log, re.IGNORECASE)) >= 2
    # Same relations: nothing was dropped and created again, the rebuilt views included.
    assert relation_oids(address, *dependents, *rebuilt) == before
    # And they still read through: the v1 view sees the new city, the aggregates are populated.
    assert query(address, "select count(*) from marts.city_forecast_v1 where city = %s",
                 ("Forecast Test Echo",)) == [(9,)]
    assert query(address, "select count(*) from pg_matviews where schemaname = 'marts'"
                          " and matviewname = any(%s) and ispopulated", (list(AGGREGATES),)) == [(3,)]


# f. The BI role reads every relation of the marts, materialized views included.

def test_the_bi_role_reads_every_mart_materialized_views_and_snapshots_included(address):
    role, password = "forecast_test_bi_reader", "forecast test bi password"
    env = {**os.environ, "REFRESH_BI_PASSWORD": password}
    try:
        run_cli("bi", "grant", "--role", role, env=env)
        # A materialized view created after the grant (dbt re-creates one whose configuration
        # changed) is readable too.
        query(address, "create materialized view marts.forecast_test_later_mv as select 1 as n")
        relations = query(address, "select c.relname, c.relkind from pg_class as c"
                                   " join pg_namespace as n on n.oid = c.relnamespace"
                                   " where n.nspname = 'marts' and c.relkind in ('r', 'v', 'm', 'p')"
                                   " order by c.relname")
        kinds = dict(relations)
        assert {kinds.get(name) for name in AGGREGATES} == {"m"}
        assert kinds.get("city_forecast_snapshots") == "r"
        assert kinds.get("forecast_test_later_mv") == "m"
        bi = psycopg2.connect(host=address.host, port=address.port, user=role, password=password,
                              dbname=address.warehouse_db)
        try:
            with bi, bi.cursor() as cur:
                for name, _ in relations:
                    cur.execute(sql.SQL("select * from {} limit 1").format(
                        sql.Identifier("marts", name)))
                    cur.fetchall()
        finally:
            bi.close()
    finally:
        query(address, "drop materialized view if exists marts.forecast_test_later_mv")
        for database in (address.warehouse_db, address.dagster_db):
            conn = connect(address, database)
            try:
                with conn, conn.cursor() as cur:
                    cur.execute("select 1 from pg_roles where rolname = %s", (role,))
                    if cur.fetchone():
                        cur.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
            finally:
                conn.close()
        query(address, sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


# g. Every forecast row names its methodology and the quantiles its band stands for.

def test_the_forecast_and_its_summary_carry_the_methodology_and_the_band_quantiles(
        address, tmp_path):
    v1_1 = f"{METHOD} v1.1"
    store_projections(address, "forecast-test-run-methods",
                      projection_frames("Forecast Test Percentiles", 2024, 400.0, 380.0, 30.0),
                      projection_frames("Forecast Test Spread", 2024, 400.0, 380.0, 30.0,
                                        methodology=v1_1, band_quantiles=None))
    # marts.city_forecast is a view over the stored rows; the summary is a table, built here.
    dbt_build(tmp_path, "city_forecast_summary")

    forecast = query(address, "select city_key, methodology_version, band_lower_quantile,"
                              " band_upper_quantile, count(*) from marts.city_forecast"
                              " where city_key like %s group by 1, 2, 3, 4 order by 1",
                     (PREFIX + "%",))
    # Every row of each city (3 scenarios x 3 years): v1.2's 10th-90th percentile band, and
    # v1.1's band that stands for no quantiles.
    assert forecast == [(PREFIX + "percentiles", METHOD, 0.1, 0.9, 9),
                        (PREFIX + "spread", v1_1, None, None, 9)]

    summary = query(address, "select city, scenario, methodology_version, s, sigma_revenue,"
                             " sigma_expenditures, sigma_fund_balance, band_lower_quantile,"
                             " band_upper_quantile from marts.city_forecast_summary"
                             " where city = any(%s) order by city, scenario",
                    (["Forecast Test Percentiles", "Forecast Test Spread"],))
    assert summary == [
        *(("Forecast Test Percentiles", scenario, METHOD, None, 0.03, 0.02, 0.05, 0.1, 0.9)
          for scenario in ("base", "optimistic", "pessimistic")),
        *(("Forecast Test Spread", scenario, v1_1, 0.02, None, None, None, None, None)
          for scenario in ("base", "optimistic", "pessimistic")),
    ]
