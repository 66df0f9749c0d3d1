"""`refresh-assets refresh --city NAME`: submit one city's refresh to the Dagster instance
(through the running webserver, so the daemon's run queue applies) and follow it."""

from __future__ import annotations

import getpass
import time
from datetime import UTC, datetime

import click
import pandas as pd

from refresh_assets.cli.common import database_errors, export_environment, settings_or_exit
from refresh_assets.lib.cities import CITY_PARTITIONS, city_key, closest_city, known_cities
from refresh_assets.lib.database import check_reachable, warehouse_connection
from refresh_assets.lib.refresh_outcomes import FAILURE, run_outcomes
from refresh_assets.lib.run_tags import CITY as CITY_TAG
from refresh_assets.lib.run_tags import REQUESTED_BY as REQUESTED_BY_TAG
from refresh_assets.lib.run_tags import TRIGGER as TRIGGER_TAG
from refresh_assets.lib.runtime import running_server_address

JOB = "refresh_city"


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "not started yet"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command()
@click.option("--city", required=True)
@click.option("--ui-port", default=3000, show_default=True, envvar="REFRESH_UI_PORT",
              help="Port of the running Dagster webserver (make ui).")
@click.option("--no-follow", is_flag=True, help="Submit and return without waiting.")
def refresh(city: str, ui_port: int, no_follow: bool) -> None:
    """Refresh one city now: ingest, validate, score, project, report."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    settings = settings_or_exit()
    key = city_key(city)
    if key not in known_cities() and not (settings.entries_dir / key).is_dir():
        near = closest_city(city)
        raise click.UsageError(f"--city {city!r}: unknown" + (f"; did you mean {near}?" if near else ""))
    with database_errors():
        address = running_server_address(settings)
        # The instance lives in the dagster database; Dagster's own connect would only
        # give a traceback when it cannot be reached.
        check_reachable(address, address.dagster_db)
    export_environment(settings, address)
    with DagsterInstance.get() as instance:
        if key not in instance.get_dynamic_partitions(CITY_PARTITIONS):
            instance.add_dynamic_partitions(CITY_PARTITIONS, [key])
        active = instance.get_run_records(RunsFilter(
            tags={CITY_TAG: key}, statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING,
                                            DagsterRunStatus.STARTED]))
        for record in active:
            tags = record.dagster_run.tags
            who = (tags.get(REQUESTED_BY_TAG) or tags.get("dagster/sensor_name")
                   or tags.get(TRIGGER_TAG, "someone"))
            click.echo(f"run {record.dagster_run.run_id} holds {key}: started by "
                       f"{tags.get(TRIGGER_TAG, 'manual')} ({who}), "
                       f"{record.dagster_run.status.value.lower()} since "
                       f"{_when(record.start_time or record.create_timestamp.timestamp())}; "
                       "this refresh waits in the queue until it ends")
        client = DagsterGraphQLClient("127.0.0.1", port_number=ui_port, timeout=60)
        try:
            run_id = client.submit_job_execution(JOB, tags={
                "dagster/partition": key, CITY_TAG: key, TRIGGER_TAG: "manual",
                REQUESTED_BY_TAG: getpass.getuser()})
        except (DagsterGraphQLClientError, OSError) as exc:
            # The client's own message is the whole GraphQL query; its cause says what failed.
            cause = str(exc.__cause__ or exc).strip().splitlines()[0]
            raise click.ClickException(
                f"could not submit to the Dagster webserver on 127.0.0.1:{ui_port} ({cause}); "
                "start it with `make ui` (webserver + daemon)") from None
        click.echo(f"submitted run {run_id} ({JOB}, partition {key})")
        if no_follow:
            return
        _follow(instance, run_id)
    _report_outcome(address, key, run_id)


def _report_outcome(address, key: str, run_id: str) -> None:
    """The city's outcome as the run recorded it; exit status 1 if it failed."""

    with warehouse_connection(address) as conn:
        outcomes = run_outcomes(conn, run_id)
    mine = outcomes[outcomes["city_key"] == key]
    if mine.empty:
        raise click.ClickException(f"run {run_id} recorded no outcome for {key}: see the run in "
                                   "the UI")
    row = mine.iloc[0]
    if row["status"] == FAILURE:
        raise click.ClickException(f"{key} was not refreshed (failed at {row['stage']}): "
                                   f"{row['error']}; it keeps its last valid results")
    click.echo(f"{key}: refreshed ({row['overall_risk'] or 'not scored'} risk, fiscal cliff "
               f"{'FY' + str(int(row['cliff_year'])) if pd.notna(row['cliff_year']) else 'none'}"
               f"; report {row['report_path'] or '-'})")
    click.echo("  marts.city_forecast, city_risk_scores and city_fiscal_health show it now; the "
               "dbt tables and its export follow by automation within a minute or two")


def _follow(instance, run_id: str) -> None:
    """Prints each step as it starts and ends, until the run finishes."""
    from dagster import DagsterEventType, DagsterRunStatus

    shown = {DagsterEventType.STEP_START: "started", DagsterEventType.STEP_SUCCESS: "done",
             DagsterEventType.STEP_FAILURE: "FAILED", DagsterEventType.RUN_DEQUEUED: "dequeued",
             DagsterEventType.ASSET_CHECK_EVALUATION: "check"}
    cursor, last_status = None, None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor)
        cursor = page.cursor
        for record in page.records:
            event = record.event_log_entry
            if event.dagster_event and event.dagster_event.event_type in shown:
                step = event.step_key or ""
                click.echo(f"  {shown[event.dagster_event.event_type]:9s} {step} "
                           f"{event.dagster_event.message or ''}".rstrip())
        run = instance.get_run_by_id(run_id)
        if run.status != last_status:
            click.echo(f"run {run_id}: {run.status.value.lower()}")
            last_status = run.status
        if run.is_finished:
            if run.status != DagsterRunStatus.SUCCESS:
                raise click.ClickException(f"run {run_id} ended {run.status.value.lower()}")
            return
        time.sleep(1)
