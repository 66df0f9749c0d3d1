"""The Celery profile (REFRESH_STEP_EXECUTOR=celery, deploy/celery/dagster.yaml, `refresh-assets
celery worker`) on a real redis-server, two real workers and the real PostgreSQL:

1. a full refresh of a range of cities spread over two workers ends as the same refresh in
   one process ends: the same validated figures, scores, projections, outcomes and marts;
2. a worker SIGKILLed in the middle of a step (the projections, held inside their
   transaction): the broker hands the step to the other worker once its visibility timeout has
   passed, the run succeeds, every city is refreshed, and nothing is stored twice."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg2
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from refresh_assets.defs.executors import (
    CELERY,
    CELERY_BROKER_VARIABLE,
    STEP_EXECUTOR_VARIABLE,
    step_executor,
)
from refresh_assets.defs.resources import SourceFilesResource
from refresh_assets.lib import analytics_store
from refresh_assets.lib.cities import city_key, known_cities
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.projections import project_cities
from refresh_assets.lib.valuation_store import load_current_valuations
from refresh_assets.settings import PROJECT_DIR, SettingsError
from tests.celery_fixtures import (
    CELERY_PROFILE,
    celery_environment,
    in_process_environment,
    prepare_home,
    redis_server,
    run_of,
    running_workers,
    start_main_job,
    step_starts,
)
from tests.e2e.test_reliability_restarts import projections_paused, projections_waiting
from tests.reliability_fixtures import instance_of, rows, wait_until, warehouse_url
from tests.ui_fixtures import own_instance

pytestmark = pytest.mark.integration

# An eighth of the state, every eighth city in name order, and Vallejo with its entry files:
# every step does real work for many cities, in a fraction of a full refresh's time.
CITIES = sorted({*sorted(known_cities())[::8], "vallejo"})
# Shorter than the dbt build on a busy machine: the workers' leases keep it from running twice.
VISIBILITY_TIMEOUT = 30
RUN_SECONDS = 600
PROJECTIONS_STEP = "analytics__projections"

# What each run stamps anew: its id, times, durations, the report files named after the run,
# and the checksum of a report's inputs (its city's projection rows, run id and time included).
RUN_STAMPS = {"run_id", "duration_seconds", "report_path", "report_checksum"}
TIMESTAMP_TYPES = {1114, 1184}  # PostgreSQL's timestamp and timestamptz
COMPARED = [
    "raw.fiscal_entries", "analytics.validated_fiscal_data", "analytics.risk_scores",
    "analytics.statewide_growth_medians", "analytics.projection_summaries",
    "analytics.projection_years", "ops.refresh_operations", "marts.city_fiscal_years",
    "marts.city_risk_scores", "marts.city_fiscal_health", "marts.city_forecast",
    "marts.city_forecast_summary", "marts.refresh_status",
]


def home(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir()
    return tmp_path / name


def comparable_rows(url: str, table: str) -> Counter:
    """The table's rows as a multiset, without what each run stamps anew."""
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(f"select * from {table}")
        keep = [i for i, column in enumerate(cur.description)
                if column.name not in RUN_STAMPS and column.type_code not in TIMESTAMP_TYPES]
        return Counter(tuple(row[i] for i in keep) for row in cur.fetchall())


def finished_run(env: dict[str, str], process, invocation: str, log: Path) -> dg.DagsterRun:
    """The run once its process has ended, which must be in success."""
    try:
        process.wait(timeout=RUN_SECONDS)
    finally:
        process.kill()
    with instance_of(env) as instance:
        run = run_of(instance, invocation)
    assert process.returncode == 0 and run is not None, log.read_text()[-6000:]
    assert run.status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-6000:]
    return run


def test_the_profile_is_the_repository_instance_with_its_own_launcher_and_logs():
    profile = yaml.safe_load((CELERY_PROFILE / "dagster.yaml").read_text())
    local = yaml.safe_load((PROJECT_DIR / "dagster.yaml").read_text())
    dagster_instance_config(str(CELERY_PROFILE))  # Dagster's schema: raises on a misspelled key
    assert {key: profile[key] for key in local} == {**local, "compute_logs": profile["compute_logs"]}
    assert profile["run_launcher"]["class"] == "DefaultRunLauncher"
    assert profile["compute_logs"]["class"] == "NoOpComputeLogManager"


def test_celery_steps_need_a_broker():
    with pytest.raises(SettingsError, match=f"needs {CELERY_BROKER_VARIABLE}"):
        step_executor({STEP_EXECUTOR_VARIABLE: CELERY})
    assert step_executor({STEP_EXECUTOR_VARIABLE: CELERY,
                          CELERY_BROKER_VARIABLE: "redis://127.0.0.1:1/0"}).name == "celery"


def test_a_refresh_spread_over_two_workers_ends_as_an_in_process_refresh(tmp_path):
    with own_instance(home(tmp_path, "in_process")) as reference, \
            own_instance(home(tmp_path, "celery")) as env, redis_server(tmp_path / "redis") as broker:
        prepare_home(reference, CITIES)
        prepare_home(env, CITIES, dbt=False)
        # The in-process refresh runs meanwhile, in its own warehouse.
        reference_log = tmp_path / "in_process.log"
        reference_run = start_main_job(in_process_environment(reference), CITIES, reference_log)
        try:
            celery_env = celery_environment(env, broker, VISIBILITY_TIMEOUT)
            log = tmp_path / "celery.log"
            with running_workers(celery_env, ["first", "second"], tmp_path) as workers:
                run = finished_run(env, *start_main_job(celery_env, CITIES, log, CELERY_PROFILE), log)
            finished_run(reference, *reference_run, reference_log)
        finally:
            reference_run[0].kill()
        with instance_of(env) as instance:
            starts = step_starts(instance, run.run_id)

        # Every step ran once, in a worker, and each worker ran some of them.
        steps = [start.step for start in starts]
        assert len(steps) == len(set(steps)) and PROJECTIONS_STEP in steps, starts
        by_worker = {w.name: [s.step for s in starts if s.pid == w.pid] for w in workers}
        assert sum(map(len, by_worker.values())) == len(steps), (starts, by_worker)
        assert all(by_worker.values()), by_worker

        # The same warehouse as the in-process refresh's, row for row.
        celery_url, reference_url = warehouse_url(env), warehouse_url(reference)
        assert rows(celery_url, "select count(*) from ops.refresh_operations"
                                " where status = 'success'") == [(len(CITIES),)]
        compared = {table: (comparable_rows(celery_url, table), comparable_rows(reference_url, table))
                    for table in COMPARED}
        differences = {table: (ours - theirs, theirs - ours)
                       for table, (ours, theirs) in compared.items() if ours != theirs}
        # Each differing table with a few of the rows only Celery's or only the reference has.
        assert differences == {}, {table: (list(only_ours)[:3], list(only_theirs)[:3])
                                   for table, (only_ours, only_theirs) in differences.items()}
        assert [table for table, (ours, _) in compared.items() if not ours] == []


def projections_of_stored_inputs(url: str) -> list[tuple]:
    """(city, scenario, cliff year, fund balance in year 10) of every city of CITIES, as the
    projections step computes them from the warehouse's validated rows and statewide priors."""
    calpers = pd.read_csv(SourceFilesResource.model_fields["calpers_valuations_csv"].default)
    with contextlib.closing(psycopg2.connect(url)) as conn:
        projected = project_cities(load_validated(conn, CITIES), analytics_store.latest_priors(conn),
                                   calpers, load_current_valuations(conn, CITIES))
    return sorted((row.city, row.scenario, None if pd.isna(row.cliff_year) else int(row.cliff_year),
                   round(row.fund_balance_year_10)) for row in projected.summary.itertuples())


def test_a_worker_killed_mid_step_its_step_runs_on_the_other_and_nothing_is_lost_or_doubled(
        tmp_path):
    with own_instance(home(tmp_path, "home")) as env, redis_server(tmp_path / "redis") as broker:
        prepare_home(env, CITIES)
        url = warehouse_url(env)
        celery_env = celery_environment(env, broker, VISIBILITY_TIMEOUT)
        log = tmp_path / "celery.log"
        with running_workers(celery_env, ["first", "second"], tmp_path) as workers, \
                instance_of(env) as instance:
            # The projections step stops inside its transaction, its rows written, its
            # worker's message unacknowledged: the worker dies there.
            with projections_paused(url):
                process, invocation = start_main_job(celery_env, CITIES, log, CELERY_PROFILE)
                wait_until("the projections step waiting inside its transaction",
                           lambda: projections_waiting(url) or process.poll() is not None,
                           RUN_SECONDS, lambda: log.read_text()[-3000:])
                assert process.poll() is None, log.read_text()[-6000:]
                run_id = run_of(instance, invocation).run_id
                [killed] = [w for w in workers for start in step_starts(instance, run_id)
                            if start.step == PROJECTIONS_STEP and start.pid == w.pid]
                killed.kill()
            [survivor] = [w for w in workers if w is not killed]
            finished_run(env, process, invocation, log)
            starts = step_starts(instance, run_id)
            assert survivor.process.poll() is None, survivor.log_tail()

        # The killed step ran again on the survivor once its message's visibility timed out;
        # every other step ran once.
        again = [start for start in starts if start.step == PROJECTIONS_STEP]
        assert [start.pid for start in again] == [killed.pid, survivor.pid], starts
        assert again[1].at - again[0].at >= VISIBILITY_TIMEOUT - 5, again
        others = [start.step for start in starts if start.step != PROJECTIONS_STEP]
        assert len(others) == len(set(others)), starts

        # Nothing lost: every city refreshed by this run, with the projection its stored inputs
        # give (a city with one filed year has none), its report and its forecast.
        assert rows(url, "select status, count(*) from ops.refresh_operations where run_id = %s"
                         " group by 1", run_id) == [("success", len(CITIES))]
        expected = projections_of_stored_inputs(url)
        assert sorted(rows(url, "select city, scenario, cliff_year, round(fund_balance_year_10)"
                                " from analytics.projection_summaries where run_id = %s",
                           run_id)) == expected
        projected = sorted({city_key(city) for city, *_ in expected})
        assert len(projected) >= len(CITIES) - 2, projected
        for query in ("select city_key from analytics.current_projections where run_id = %s",
                      "select distinct city_key from marts.city_forecast where run_id = %s"):
            assert sorted(key for (key,) in rows(url, query, run_id)) == projected, query
        reports = Path(env["REFRESH_REPORTS_DIR"]).glob(f"*/{run_id}.html")
        assert sorted(report.parent.name for report in reports) == CITIES

        # Nothing twice: one row per key in what the steps append and in the marts.
        for table, key in [
            ("raw.fiscal_entries", "city_key, fiscal_year, source_kind"),
            ("analytics.risk_scores", "city_key, fiscal_year"),
            ("analytics.projection_summaries", "city_key, scenario"),
            ("analytics.projection_years", "city_key, scenario, fiscal_year"),
            ("marts.city_forecast", "city_key, scenario, fiscal_year"),
            ("marts.city_risk_scores", "city_key, fiscal_year"),
        ]:
            assert rows(url, f"select {key}, count(*) from {table} group by {key}"
                             " having count(*) > 1") == [], table
