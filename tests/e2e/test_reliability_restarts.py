"""Reliability: the faults a production orchestrator meets, each test asserting that nothing
was lost and nothing done twice.

1. PostgreSQL stopped in the middle of a full refresh (`refresh-assets materialize`, as an
   operator runs it) and started again: the command ends with one line saying what happened
   and what to do, the marts keep the last complete refresh meanwhile, the next
   `materialize` closes the interrupted run (failed, with its cities) and completes, and
   then every city's marts match its stored inputs.
2. The Dagster daemon (`dagster-daemon run`, as a service manager runs it) killed with
   SIGKILL between ticks and again during a run, and started again each time, with entry
   files written and a served finance page changed while it was down: the sensors' cursors
   are kept, each city gets one run per distinct change, each new document one run and one
   email (a real SMTP server), and the run the kill interrupted ends (its worker outlives
   the daemon) and is never launched again."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster._core.scheduler.instigation import TickStatus  # not exported by dagster

from refresh_assets.lib.entries import EntryFile, known_figures, write_entry_file
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.run_tags import CITY as CITY_TAG
from refresh_assets.lib.runtime import server_address
from refresh_assets.lib.scoring import score_cities
from refresh_assets.settings import PROJECT_DIR, load_settings
from tests import http_fixtures
from tests.conftest import VENV_BIN, run_cli
from tests.integration.test_source_documents import REGISTRY, finance_page, ingest_published_rows
from tests.reliability_fixtures import (
    daemon_environment,
    instance_of,
    rows,
    running_daemon,
    wait_until,
    warehouse_url,
)
from tests.smtp_fixtures import smtp_server
from tests.ui_fixtures import own_instance

served_site = http_fixtures.served_site
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


# -- 2. the daemon killed and started again -----------------------------------------------------

DOCUMENTS_CITY, PAGE = "Martinez", "/martinez/finance"
ENTERED = ("Comprehensive Annual Financial Report FY 2019-20", "/docs/martinez-cafr-2020.pdf")
FIRST_DOCUMENT = ("Annual Comprehensive Financial Report FY 2021-22", "/docs/martinez-acfr-2022.pdf")
SECOND_DOCUMENT = ("Annual Comprehensive Financial Report FY 2022-23", "/docs/martinez-acfr-2023.pdf")
NOTICE = "New ACFR to enter: Martinez, fiscal year {}"
ENTRY_SENSOR, SOURCE_SENSOR = "entry_files_sensor", "source_documents_sensor"
DAEMON_SECONDS = 240  # a daemon start (the code location loads) and a run, on a busy machine


def sensor_states(instance: dg.DagsterInstance) -> dict:
    return {state.instigator_name: state for state in instance.all_instigator_state()
            if state.instigator_name in (ENTRY_SENSOR, SOURCE_SENSOR)}


def sensor_cursors(instance: dg.DagsterInstance) -> dict[str, str | None]:
    return {name: state.instigator_data.cursor for name, state in sensor_states(instance).items()}


def ticks_since(instance: dg.DagsterInstance, sensor: str, since: float) -> int:
    """The sensor's completed ticks that started after `since` (a Unix time)."""
    state = sensor_states(instance)[sensor]
    return sum(tick.status != TickStatus.STARTED for tick in instance.get_ticks(
        state.instigator_origin_id, state.selector_id, after=since))


def runs(instance: dg.DagsterInstance, job: str) -> list[dg.DagsterRun]:
    return [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(job_name=job))]


def runs_by_city(instance: dg.DagsterInstance, job: str) -> dict[str, list[dg.DagsterRun]]:
    by_city: dict[str, list[dg.DagsterRun]] = {}
    for run in runs(instance, job):
        by_city.setdefault(run.tags.get(CITY_TAG), []).append(run)
    return by_city


def in_progress(instance: dg.DagsterInstance) -> list[str]:
    """Runs launched and not ended (queued ones wait for the next daemon, harmlessly)."""
    return [f"{r.dagster_run.job_name} {r.dagster_run.status.value}" for r in instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
                                dg.DagsterRunStatus.CANCELING]))]


def notices(inbox, fiscal_year: int) -> int:
    return inbox.subjects().count(NOTICE.format(fiscal_year))


def file_states(cursor: str) -> dict[str, list]:
    return json.loads(cursor)


def write_benicia_entry(entries: Path) -> None:
    write_entry_file(entries, EntryFile(
        city="Benicia", fiscal_year=2019, source={"title": "Benicia ACFR FY2018-19"},
        entered_by="test", entered_at="2026-11-24T09:00:00Z",
        figures=known_figures(entries, "Benicia", 2019)))


def test_daemon_killed_between_ticks_and_during_a_run_keeps_cursors_and_does_nothing_twice(
        served_site, tmp_path):
    with own_instance(tmp_path) as env, smtp_server() as (inbox, smtp_port):
        entries = Path(env["REFRESH_ENTRIES_DIR"])
        shutil.copytree(PROJECT_DIR / "entries" / "vallejo", entries / CITY_KEY)
        served_site.route(PAGE, finance_page(FIRST_DOCUMENT, ENTERED), headers={"ETag": '"first"'})
        Path(env["REFRESH_SOURCES_FILE"]).write_text(REGISTRY.format(
            cities=f"  {DOCUMENTS_CITY}:\n    finance_pages: [{served_site.url(PAGE)}]"))
        run_cli("dbt", "prepare", env=env)  # the database first, as `refresh-assets ui` does
        # 2017-2020 are entered: only the later reports on the page are new.
        ingest_published_rows(server_address(load_settings(env)), DOCUMENTS_CITY)
        daemon_env = daemon_environment(
            env, REFRESH_SMTP_HOST="127.0.0.1", REFRESH_SMTP_PORT=str(smtp_port),
            REFRESH_SMTP_SECURITY="none", REFRESH_SMTP_SENDER="refresh@example.org",
            REFRESH_SMTP_RECIPIENTS="cfo@example.org", REFRESH_SMTP_OPERATORS="ops@example.org")
        log = tmp_path / "daemon.log"

        with instance_of(env) as instance:
            def settled(daemon, what, probe):
                return wait_until(what, lambda: (probe() and not in_progress(instance))
                                  or not daemon.alive(), DAEMON_SECONDS,
                                  lambda: (in_progress(instance), inbox.subjects(),
                                           daemon.log_tail()))

            # The first daemon: Vallejo's files and the page's new report, once each.
            with running_daemon(daemon_env, log) as daemon:
                settled(daemon, "Vallejo's refresh and the first document's email", lambda: (
                    [r.status for r in runs(instance, "refresh_city")] == [dg.DagsterRunStatus.SUCCESS]
                    and notices(inbox, 2022) == 1))
                assert daemon.alive(), daemon.log_tail()
                # Between ticks: right after one of the entry sensor's (every 5 s) ends.
                just_now = time.time()
                wait_until("an entry sensor tick", lambda: ticks_since(instance, ENTRY_SENSOR, just_now),
                           60)
                before_kill = sensor_cursors(instance)
                daemon.kill()
                assert sensor_cursors(instance) == before_kill

            # While it is down: a new city's entry file, and a new report on the page.
            write_benicia_entry(entries)
            served_site.route(PAGE, finance_page(SECOND_DOCUMENT, FIRST_DOCUMENT, ENTERED),
                              headers={"ETag": '"second"'})

            # The second daemon, killed while it runs Benicia's refresh.
            with running_daemon(daemon_env, log) as daemon:
                [interrupted] = wait_until("Benicia's refresh running", lambda: [
                    r for r in runs_by_city(instance, "refresh_city").get("benicia", [])
                    if r.status == dg.DagsterRunStatus.STARTED], DAEMON_SECONDS, daemon.log_tail)
                daemon.kill()
                # Its run worker, and any other run launched, end without the daemon.
                wait_until("the launched runs' end", lambda: not in_progress(instance),
                           DAEMON_SECONDS, lambda: in_progress(instance))
            assert instance.get_run_by_id(interrupted.run_id).status == dg.DagsterRunStatus.SUCCESS

            # While it is down again: Vallejo's base year corrected.
            correct_city_revenues(entries)

            # The third daemon: the correction once; the second report once, whenever its
            # tick came; and nothing more at its next ticks.
            with running_daemon(daemon_env, log) as daemon:
                settled(daemon, "Vallejo's second refresh and the second document's email", lambda: (
                    len(runs_by_city(instance, "refresh_city")[CITY_KEY]) == 2
                    and notices(inbox, 2023) == 1))
                quiet_from = time.time()
                wait_until("a source check and an entry tick more", lambda: (
                    ticks_since(instance, SOURCE_SENSOR, quiet_from)
                    and ticks_since(instance, ENTRY_SENSOR, quiet_from)), 90)
                settled(daemon, "the end of any run those ticks started", lambda: True)
                assert daemon.alive(), daemon.log_tail()
                after = sensor_cursors(instance)
                refreshes = runs_by_city(instance, "refresh_city")
                documents = runs_by_city(instance, "source_documents")

        # Cursors kept across both kills: every file unchanged since has the state it had.
        kept, now = file_states(before_kill[ENTRY_SENSOR]), file_states(after[ENTRY_SENSOR])
        assert {path for path in kept if kept[path] != now.get(path)} == {f"{CITY_KEY}/{YEAR}.yaml"}
        assert set(now) - set(kept) == {"benicia/2019.yaml"}
        dispatched = [json.loads(c[SOURCE_SENSOR])["dispatched_through"] for c in (before_kill, after)]
        assert 0 < dispatched[0] < dispatched[1]

        # One run per distinct change, each ended in success; one per new document.
        assert {city: sorted(r.status.value for r in city_runs) for city, city_runs in refreshes.items()
                } == {CITY_KEY: ["SUCCESS", "SUCCESS"], "benicia": ["SUCCESS"]}
        assert len({r.tags["dagster/run_key"] for r in refreshes[CITY_KEY]}) == 2
        assert {city: [r.status.value for r in city_runs] for city, city_runs in documents.items()
                } == {"martinez": ["SUCCESS", "SUCCESS"]}

        # One email per document, and no email sent twice.
        assert [notices(inbox, year) for year in (2022, 2023)] == [1, 1]
        url = warehouse_url(env)
        assert rows(url, "select count(*), count(distinct notification_id) from ops.refresh_notifications"
                         " where city_key = 'martinez' and email_status = 'sent'") == [(2, 2)]
        stakeholder = [m for e, m in zip(inbox.envelopes, inbox.messages(), strict=True)
                       if e.rcpt_tos == ["cfo@example.org"]]
        assert rows(url, "select count(*), count(distinct run_id) from ops.notifications"
                         " where status = 'sent'") == [(len(stakeholder), len(stakeholder))]
