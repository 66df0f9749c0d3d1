"""Reliability: the faults a production orchestrator meets, each test asserting that nothing
was lost and nothing done twice.

1. PostgreSQL stopped in the middle of a full refresh (`refresh-assets materialize`, as an
   operator runs it) and started again: the command ends with one line saying what happened
   and what to do, the marts keep the last complete refresh meanwhile, the next
   `materialize` closes the interrupted run (failed, with its cities) and completes, and
   then every city's marts match its stored inputs."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from refresh_assets.lib.entries import EntryFile, known_figures, write_entry_file
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.scoring import score_cities
from refresh_assets.settings import PROJECT_DIR
from tests.conftest import VENV_BIN, run_cli
from tests.reliability_fixtures import instance_of, rows, wait_until, warehouse_url
from tests.ui_fixtures import own_instance

pytestmark = pytest.mark.e2e

# The marts a city's refresh rebuilds (tables) or reads through (the forecast views), and the
# columns of theirs that every validation stamps anew for every city (the others must not
# change for a city whose inputs did not).
CITY_MARTS = {
    "city_fiscal_years": ("validated_at",),
    "city_risk_scores": (),
    "city_fiscal_health": (),
    "city_forecast": (),
    "city_forecast_v1": (),
    "city_forecast_summary": (),
    "fiscal_entry_changes": (),
    "fiscal_validation_issues": ("run_id", "validated_at"),
}
CITY, CITY_KEY, YEAR = "Vallejo", "vallejo", 2020  # its last year: the projections' base year
NEW_GF_REVENUES = 112_000_000
CITIES = 477
STOP_SECONDS = 300  # the full refresh reaching its projections step, on a busy machine


def mart_rows(url: str, mart: str, *, leave_out: tuple[str, ...] = (),
              except_city: str | None = None) -> Counter:
    """The mart's rows as a multiset, without the columns `leave_out` and the rows of
    `except_city`."""
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(f"select * from marts.{mart} where city is distinct from %s", (except_city,))
        keep = [i for i, column in enumerate(cur.description) if column.name not in leave_out]
        return Counter(tuple(row[i] for i in keep) for row in cur.fetchall())


def marts(url: str) -> dict[str, Counter]:
    return {mart: mart_rows(url, mart) for mart in CITY_MARTS}


def other_cities_marts(url: str) -> dict[str, Counter]:
    """The marts without the corrected city, and without the columns every validation stamps."""
    return {mart: mart_rows(url, mart, leave_out=stamps, except_city=CITY)
            for mart, stamps in CITY_MARTS.items()}


def run_id_of(stdout: str) -> str:
    return re.search(r"\(run ([0-9a-f-]{36}), ", stdout)[1]


def correct_city_revenues(entries: Path) -> None:
    """An operator's correction of the city's base year: its scores and projection change."""
    figures = {**known_figures(entries, CITY, YEAR), "gf_revenues": NEW_GF_REVENUES}
    write_entry_file(entries, EntryFile(
        city=CITY, fiscal_year=YEAR, source={"title": "Vallejo ACFR FY2019-20, restated"},
        entered_by="test", entered_at="2026-11-24T09:00:00Z", figures=figures))


@contextlib.contextmanager
def projections_paused(url: str):
    """Holds analytics.current_projections against writers: the projections step copies its
    rows, then waits on this lock to point the cities at them, inside its transaction. Reads
    go on. Released when the block ends (or the server stops)."""
    with contextlib.closing(psycopg2.connect(url)) as conn:
        with conn.cursor() as cur:
            cur.execute("lock table analytics.current_projections in share mode")
        yield


def projections_waiting(url: str) -> bool:
    return bool(rows(url, "select pid from pg_stat_activity where wait_event_type = 'Lock'"
                          " and query like '%%current_projections%%'"))


def events_of(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType):
    return [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=event_type).records]


def steps_with(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> set:
    return {entry.step_key for entry in events_of(instance, run_id, event_type)}


def test_postgres_stopped_mid_refresh_fails_clearly_and_a_retry_completes_every_city(tmp_path):
    with own_instance(tmp_path) as env:
        entries = Path(env["REFRESH_ENTRIES_DIR"])
        shutil.copytree(PROJECT_DIR / "entries", entries, dirs_exist_ok=True)
        run_cli("db", "start", env=env)
        url = warehouse_url(env)
        baseline = run_cli("materialize", env=env)
        assert f"Refreshed {CITIES} of {CITIES} cities" in baseline.stdout
        complete, others = marts(url), other_cities_marts(url)
        versions = rows(url, "select count(*) from raw.fiscal_entries")[0][0]

        correct_city_revenues(entries)
        with projections_paused(url):
            refresh = subprocess.Popen([str(VENV_BIN / "refresh-assets"), "materialize"], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_until("projections step waiting inside its transaction",
                       lambda: projections_waiting(url) or refresh.poll() is not None,
                       STOP_SECONDS)
            assert refresh.poll() is None, refresh.communicate()
            run_cli("db", "stop", env=env)
        stdout, stderr = refresh.communicate(timeout=STOP_SECONDS)

        # One line: what happened, where, and what to do.
        assert refresh.returncode == 1, stdout + stderr
        assert "Traceback" not in stdout + stderr and "Retrying" not in stdout + stderr
        [error] = stderr.strip().splitlines()
        interrupted = re.search(r"during run ([0-9a-f-]{36}) ", error)[1]
        assert error == (
            f"Error: the database went away during run {interrupted} (at analytics/projections):"
            " the database is not running: start it with `refresh-assets db start` (or `make"
            " demo`), then run `refresh-assets materialize` again; the marts keep the last"
            " complete refresh"), error

        run_cli("db", "start", env=env)
        # Nothing partial: the step's rows went with its transaction, dbt never ran.
        assert marts(url) == complete
        assert rows(url, "select count(*) from analytics.projection_years where run_id = %s",
                    interrupted) == [(0,)]

        retry = run_cli("materialize", env=env)
        assert f"run {interrupted} of an earlier `materialize` was left unfinished" in retry.stdout
        assert f"Refreshed {CITIES} of {CITIES} cities" in retry.stdout
        completed = run_id_of(retry.stdout)

        with instance_of(env) as instance:
            run = instance.get_run_by_id(interrupted)
            assert run.status == dg.DagsterRunStatus.FAILURE
            [failure] = events_of(instance, interrupted, dg.DagsterEventType.RUN_FAILURE)
            assert failure.dagster_event.message.startswith("interrupted: the run's process ended")
            assert "analytics__projections" in (
                steps_with(instance, interrupted, dg.DagsterEventType.STEP_START)
                - steps_with(instance, interrupted, dg.DagsterEventType.STEP_SUCCESS))
            assert instance.get_run_by_id(completed).status == dg.DagsterRunStatus.SUCCESS

        # Every city's refresh recorded once per run: failed with the interrupted run, done by
        # the retry; none shown running for ever.
        assert rows(url, "select run_id = %s, status, stage, count(*) from ops.refresh_operations"
                         " where run_id in (%s, %s) group by 1, 2, 3 order by 1",
                    completed, interrupted, completed) == [
            (False, "failure", "run", CITIES), (True, "success", None, CITIES)]
        assert rows(url, "select count(*) from marts.refresh_status where refresh_running") == [(0,)]

        # Nothing done twice: the correction stored once, the city scored once from it (the
        # interrupted run's scores stand: the retry found nothing new), projected once.
        assert rows(url, "select count(*) from raw.fiscal_entries")[0][0] == versions + 1
        assert rows(url, "select count(distinct run_id) from analytics.risk_scores"
                         " where city_key = %s", CITY_KEY) == [(2,)]
        assert rows(url, "select count(distinct run_id) from analytics.projection_summaries"
                         " where city_key = %s", CITY_KEY) == [(2,)]
        assert rows(url, "select count(distinct run_id) from analytics.projection_summaries"
                         " where city_key <> %s", CITY_KEY) == [(1,)]

        # Every other city exactly as after the baseline; the corrected one from its new inputs.
        after = other_cities_marts(url)
        assert [mart for mart in CITY_MARTS if after[mart] != others[mart]] == []
        assert_city_matches_its_inputs(url, completed)


def assert_city_matches_its_inputs(url: str, completed: str) -> None:
    [(version, revenues)] = rows(
        url, "select entry_version, gf_revenues from marts.city_fiscal_years"
             " where city_key = %s and fiscal_year = %s", CITY_KEY, YEAR)
    assert revenues == NEW_GF_REVENUES
    assert rows(url, "select max(entry_version) from raw.fiscal_entries where city = %s"
                     " and fiscal_year = %s", CITY, YEAR) == [(version,)]
    with contextlib.closing(psycopg2.connect(url)) as conn:
        expected = score_cities(load_validated(conn, [CITY_KEY])).scores
    expected_points = {int(r.fiscal_year): float(r.overall_points) for r in expected.itertuples()}
    assert {year: float(points) for year, points in rows(
        url, "select fiscal_year, overall_points from marts.city_risk_scores where city_key = %s",
        CITY_KEY)} == expected_points
    assert rows(url, "select entry_version from marts.city_risk_scores where city_key = %s"
                     " and fiscal_year = %s", CITY_KEY, YEAR) == [(version,)]
    # Its whole forecast from the retry's projection, of the corrected base year.
    assert rows(url, "select run_id, base_year, count(*) from marts.city_forecast"
                     " where city_key = %s group by 1, 2", CITY_KEY) == [(completed, YEAR, 30)]
    assert rows(url, "select distinct entry_version from marts.city_forecast_summary"
                     " where city = %s", CITY) == [(version,)]
