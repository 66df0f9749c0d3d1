"""The main job end to end through the CLI, as an operator runs it: a clean full refresh,
then one bad entry for one city (the other 476 are refreshed, the bad one is named in the
summary, the ops table and the check metadata, exit status 1), then the fix."""

import os
import re
import shutil
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from refresh_assets.lib.entries import EntryFile, known_figures, write_entry_file
from refresh_assets.settings import PROJECT_DIR
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def query(address, sql: str, params=(), database: str | None = None):
    with psycopg2.connect(address.libpq_url(database)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def run_id_of(stdout: str) -> str:
    return re.search(r"\(run ([0-9a-f-]{36}), ", stdout)[1]


def write_benicia_2019(entries, gf_revenues) -> None:
    figures = {**known_figures(entries, "Benicia", 2019), "gf_revenues": gf_revenues}
    write_entry_file(entries, EntryFile(
        city="Benicia", fiscal_year=2019, source={"title": "Benicia ACFR FY2018-19"},
        entered_by="test", entered_at="2026-11-23T10:00:00Z", figures=figures))


def latest_benicia_scoring(address) -> str:
    return query(address, "select run_id from analytics.risk_scores where city_key = 'benicia'"
                          " order by scored_at desc limit 1")[0][0]


def check_evaluation(run_id: str, check_name: str):
    with dg.DagsterInstance.get() as instance:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    [evaluation] = [r.event_log_entry.dagster_event.event_specific_data for r in records
                    if r.event_log_entry.dagster_event.event_specific_data.check_name == check_name]
    return evaluation


def assert_dbt_metadata_and_column_lineage() -> None:
    """dbt tables carry their row count and columns; a staging view's columns trace back to
    the Python asset's table (analytics.projection_years.k becomes years_ahead)."""
    with dg.DagsterInstance.get() as instance:
        def metadata(*path):
            event = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
            return event.asset_materialization.metadata

        summary = metadata("marts", "city_forecast_summary")
        assert summary["dagster/row_count"].value == 3 * 476
        assert "gap_to_close" in {c.name for c in summary["dagster/column_schema"].value.columns}
        lineage = metadata("staging", "stg_analytics__projection_years")[
            "dagster/column_lineage"].value
        assert [(d.asset_key, d.column_name) for d in lineage.deps_by_column["years_ahead"]] == [
            (dg.AssetKey(["analytics", "projections"]), "k")]
        projection_columns = metadata("analytics", "projections")["dagster/column_schema"].value
        assert {"k", "fund_balance", "cliff_year", "run_id"} <= {
            c.name for c in projection_columns.columns}


def test_one_bad_city_never_stops_the_others(warehouse, dbt_manifest, tmp_path):
    entries = tmp_path / "entries"
    shutil.copytree(PROJECT_DIR / "entries", entries)
    env = {**os.environ, "REFRESH_ENTRIES_DIR": str(entries)}

    clean = run_cli("materialize", env=env)
    assert "[3/3] materialize every asset" in clean.stdout
    assert "Refreshed 477 of 477 cities" in clean.stdout
    # A progress line per step, not Dagster's event log (that goes to the file named).
    assert "analytics/risk_scores" in clean.stdout and "477/477 cities" in clean.stdout
    assert " DEBUG " not in clean.stdout and "STEP_START" not in clean.stdout
    log_file = re.search(r"Event log: (\S+)", clean.stdout)[1]
    assert "STEP_SUCCESS" in Path(log_file).read_text()
    assert query(warehouse, "select count(*), count(distinct city) from marts.city_fiscal_years"
                 ) == [(1841, 477)]
    assert query(warehouse, "select count(*), count(distinct city) from marts.city_risk_scores"
                 ) == [(1841, 477)]
    assert query(warehouse, "select count(distinct city), count(*)"
                            " from marts.city_forecast_summary") == [(476, 3 * 476)]
    # The aggregates count every projected city once per scenario at the state level.
    assert query(warehouse, "select scenario, sum(cities) from marts.forecast_cliff_aggregates"
                            " where geography_level = 'state' group by 1 order by 1") == [
        ("base", 476), ("optimistic", 476), ("pessimistic", 476)]
    assert_dbt_metadata_and_column_lineage()
    clean_run = run_id_of(clean.stdout)
    assert query(warehouse, "select status, count(*) from ops.refresh_operations"
                            " where run_id = %s group by 1", (clean_run,)) == [("success", 477)]
    # The real data set validates with no error; its oddities are warnings.
    severities = dict(query(warehouse, "select severity, count(*)"
                                       " from marts.fiscal_validation_issues group by 1"))
    assert "error" not in severities and severities["warning"] > 0
    versions = query(warehouse, "select count(*) from raw.fiscal_entries")[0][0]
    scored_before = latest_benicia_scoring(warehouse)
    mart_before = query(warehouse, "select overall_points from marts.city_risk_scores"
                                   " where city_key = 'benicia' order by fiscal_year")

    write_benicia_2019(entries, -5)
    bad = run_cli("materialize", env=env, check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Refreshed 476 of 477 cities" in bad.stdout
    assert "benicia: validation: benicia/2019.yaml: field gf_revenues: non_negative" in bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr
    bad_run = run_id_of(bad.stdout)
    outcomes = dict(query(warehouse, "select status, count(*) from ops.refresh_operations"
                                     " where run_id = %s group by 1", (bad_run,)))
    assert outcomes == {"success": 476, "failure": 1}
    [(stage, error)] = query(warehouse, "select stage, error from ops.refresh_operations"
                                        " where run_id = %s and status = 'failure'", (bad_run,))
    assert stage == "validation"
    assert error.startswith("benicia/2019.yaml: field gf_revenues: non_negative:")
    # Only the bad entry is a new version; the city keeps its last valid scores everywhere.
    assert query(warehouse, "select count(*) from raw.fiscal_entries")[0][0] == versions + 1
    assert latest_benicia_scoring(warehouse) == scored_before
    assert query(warehouse, "select overall_points from marts.city_risk_scores"
                            " where city_key = 'benicia' order by fiscal_year") == mart_before
    check = check_evaluation(bad_run, "no_validation_errors")
    assert not check.passed
    assert check.metadata["cities_held"].value == ["benicia"]
    assert "non_negative" in check.metadata["details"].value
    assert query(warehouse, "select city, rule, severity from marts.fiscal_validation_issues"
                            " where severity = 'error'") == [("Benicia", "non_negative", "error")]

    write_benicia_2019(entries, 31_000_000)
    fixed = run_cli("materialize", env=env)
    assert "Refreshed 477 of 477 cities" in fixed.stdout
    assert check_evaluation(run_id_of(fixed.stdout), "no_validation_errors").passed
    coherent = check_evaluation(run_id_of(fixed.stdout), "scenarios_are_coherent")
    assert coherent.passed and coherent.metadata["incoherent_cities"].value == "none"
    # Every projection row says which method made it, and the band what it stands for.
    assert query(warehouse, "select distinct methodology_version, band_lower_quantile,"
                            " band_upper_quantile from marts.city_forecast") == [("v1.2", 0.1, 0.9)]
    assert query(warehouse, "select distinct methodology_version"
                            " from analytics.projection_years") == [("v1.2",)]
    # Fixing the entry removes its issue from the current issues.
    assert query(warehouse, "select count(*) from marts.fiscal_validation_issues"
                            " where severity = 'error'") == [(0,)]
    assert latest_benicia_scoring(warehouse) == run_id_of(fixed.stdout)
