"""Running the main job as a person watches it: one line per step with cities done / total
and elapsed time, Dagster's event log in a file (or streamed with --verbose), and a
closing summary of what happened to each city, read from ops.refresh_operations."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from refresh_assets.lib.cities import CITY_PARTITIONS, city_keys_with_data
from refresh_assets.lib.database import (
    DatabaseUnavailable,
    ServerAddress,
    check_reachable,
    warehouse_connection,
)
from refresh_assets.lib.refresh_outcomes import FAILURE, record_failures, run_outcomes
from refresh_assets.lib.run_tags import TRIGGER
from refresh_assets.lib.runtime import unavailable_message
from refresh_assets.settings import PROJECT_DIR, Settings

MAIN_JOB = "refresh_all"
INVOCATION_TAG = "refresh/invocation"  # finds the run this command started
HOST_TAG = "refresh/host"  # the machine whose job process runs it
POLL_SECONDS = 0.5
STOP_SECONDS = 10  # for the job to end once told to


@dataclass(frozen=True)
class RunSummary:
    run_id: str | None
    status: str
    seconds: float
    outcomes: pd.DataFrame
    log_file: Path

    @property
    def failed(self) -> pd.DataFrame:
        return self.outcomes[self.outcomes["status"] == FAILURE]

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS" and self.failed.empty


def register_cities(settings: Settings) -> list[str]:
    """Adds every city with data to the instance's city partitions; returns all of them."""
    from dagster import DagsterInstance  # the instance only; the CLI never loads defs/

    with DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(CITY_PARTITIONS))
        missing = [k for k in city_keys_with_data(settings.entries_dir) if k not in known]
        instance.add_dynamic_partitions(CITY_PARTITIONS, missing)
        return list(instance.get_dynamic_partitions(CITY_PARTITIONS))


def _copy_lines(source, log, echo: bool) -> None:
    """The job's output into the log file, and onto the terminal too with --verbose."""
    for line in source:
        log.write(line)
        if echo:
            sys.stdout.write(line)


def _step_label(step_key: str) -> str:
    # analytics__risk_scores -> analytics/risk_scores; the dbt step keeps its op name.
    return step_key.replace("__", "/")


def run_main_job(settings: Settings, address: ServerAddress, verbose: bool) -> RunSummary:
    """Runs every asset for every city in one run, showing progress; returns its summary."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    cities = register_cities(settings)
    _close_interrupted_runs(address)
    invocation = uuid.uuid4().hex
    tags = {"dagster/asset_partition_range_start": cities[0],
            "dagster/asset_partition_range_end": cities[-1],
            TRIGGER: "manual", INVOCATION_TAG: invocation, HOST_TAG: socket.gethostname()}
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{MAIN_JOB}-{datetime.now():%Y%m%d-%H%M%S}.log"
    click.echo(f"      {len(cities)} cities in one run; event log: {log_file}")
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute",
               "-m", "refresh_assets.definitions", "-j", MAIN_JOB, "--tags", json.dumps(tags)]
    started = time.perf_counter()
    with log_file.open("w") as log, _root_logging_to(log):
        process = subprocess.Popen(command, cwd=PROJECT_DIR, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        copier = threading.Thread(target=_copy_lines, args=(process.stdout, log, verbose))
        copier.start()
        # A fixed width: piped output (CI, a log) would otherwise truncate the counts.
        console = Console(width=110)
        progress = Progress(TextColumn("      {task.description:<36}"), BarColumn(bar_width=20),
                            TextColumn("{task.fields[detail]:<18}"),
                            TextColumn("{task.fields[state]:<8}"), TimeElapsedColumn(),
                            console=console, disable=verbose, transient=False)
        run_id, cursor, lines, more, lost = None, None, {}, False, None
        with DagsterInstance.get() as instance, progress:
            while True:
                finished = process.poll() is not None
                if lost is None:
                    try:
                        if run_id is None:
                            records = instance.get_run_records(
                                RunsFilter(tags={INVOCATION_TAG: invocation}), limit=1)
                            run_id = records[0].dagster_run.run_id if records else None
                        if run_id is not None:
                            page = instance.get_records_for_run(
                                run_id, cursor=cursor, of_type={
                                    DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS,
                                    DagsterEventType.STEP_FAILURE,
                                    DagsterEventType.ASSET_MATERIALIZATION})
                            cursor, more = page.cursor, page.has_more
                            for record in page.records:
                                _show_step(progress, lines, record.event_log_entry, len(cities))
                    except _database_errors() as exc:
                        lost = exc
                        _stop_if_unreachable(process, address)
                if finished and (lost is not None or run_id is None or not more):
                    break
                time.sleep(POLL_SECONDS)
        copier.join()
    seconds = time.perf_counter() - started
    if lost is not None:
        _fail_unless_reachable(settings, address, run_id, lines)
    status, error = _run_status(run_id, address)
    outcomes = pd.DataFrame(columns=["city_key", "status", "stage", "error"])
    if run_id is not None:
        with warehouse_connection(address) as conn:
            if error is not None:
                # As the run failure sensor does when the daemon runs: every city of the run
                # that has no outcome yet failed with the run (recording twice is harmless).
                record_failures(conn, run_id, "manual", "run", pd.DataFrame(
                    {"city_key": cities, "city": cities, "error": error[:2000]}))
            outcomes = run_outcomes(conn, run_id)
    return RunSummary(run_id, status, seconds, outcomes, log_file)


@dataclass
class _StepLine:
    task: int
    label: str
    done: bool = False
    cities: int = 0  # materializations of city partitions seen
    assets: int = 0  # materializations without a partition (the medians, dbt models)


def _show_step(progress: Progress, lines: dict[str, _StepLine], entry, cities: int) -> None:
    """Updates the step's line: cities done / total for a per-city step, assets built for
    the others, and its state."""
    from dagster import DagsterEventType

    step, event = entry.step_key, entry.dagster_event
    if step not in lines:
        lines[step] = _StepLine(progress.add_task(_step_label(step), total=cities,
                                                  detail="", state="running"), _step_label(step))
    line = lines[step]
    if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
        if event.partition:
            line.cities += 1
        else:
            line.assets += 1
    elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
        progress.stop_task(line.task)
        line.done = True
    state = {DagsterEventType.STEP_SUCCESS: "done",
             DagsterEventType.STEP_FAILURE: "FAILED"}.get(event.event_type)
    detail = (f"{line.cities}/{cities} cities" if line.cities
              else f"{line.assets} asset(s)" if line.assets else "")
    progress.update(line.task, completed=line.cities, detail=detail,
                    **({"state": state} if state else {}))


def _run_status(run_id: str | None, address: ServerAddress) -> tuple[str, str | None]:
    """The run's final status, and its failure message if it failed. Its process has ended:
    a run it left unfinished (the database went away while it ran) is marked failed."""
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

    if run_id is None:
        return "NOT STARTED", "the run did not start: see the event log"
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if not run.is_finished:
            _close_run(instance, address, run)
            run = instance.get_run_by_id(run_id)
        if run.status != DagsterRunStatus.FAILURE:
            return run.status.value, None
        failures = instance.get_records_for_run(
            run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}).records
        messages = [r.event_log_entry.dagster_event.message or "" for r in failures]
        return run.status.value, next((m for m in messages if m), "the run failed")


INTERRUPTED = ("interrupted: the run's process ended before recording its end (the database "
               "went away under it?); its cities keep their last complete results until "
               "`refresh-assets materialize` refreshes them")


def _database_errors() -> tuple[type[Exception], ...]:
    """What Dagster's storage and psycopg2 raise when the database server goes away."""
    import psycopg2
    import sqlalchemy.exc
    from dagster_postgres.utils import DagsterPostgresException

    return (DagsterPostgresException, sqlalchemy.exc.OperationalError, psycopg2.OperationalError,
            DatabaseUnavailable)


@contextmanager
def _root_logging_to(log) -> Iterator[None]:
    """Library warnings (dagster-postgres's "Retrying failed database connection", one per
    retry) go to the event log file beside the job's, not between the progress lines."""
    handler = logging.StreamHandler(log)
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)


def _stop_if_unreachable(process: subprocess.Popen, address: ServerAddress) -> None:
    """Stops the job when its database is gone: its steps' transactions and its cities' locks
    went with the server, so it must not go on (it would only retry its event writes)."""
    try:
        check_reachable(address)
    except DatabaseUnavailable:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()


def _fail_unless_reachable(settings: Settings, address: ServerAddress, run_id: str | None,
                           lines: dict[str, _StepLine]) -> None:
    """One line when the database went away during the run and is still away: which run,
    at which step, and what to do."""
    try:
        check_reachable(address)
    except DatabaseUnavailable as exc:
        at = ", ".join(line.label for line in lines.values() if not line.done) or "its start"
        raise click.ClickException(
            f"the database went away during run {run_id or '(not created)'} (at {at}): "
            f"{unavailable_message(settings, exc)}, then run `refresh-assets materialize` "
            "again; the marts keep the last complete refresh") from None


def _close_run(instance, address: ServerAddress, run) -> None:
    """Marks failed a run whose process ended without recording its end, with every city
    it started and did not finish, so neither the UI nor marts.refresh_status shows it
    running for ever."""
    instance.report_run_failed(run, INTERRUPTED)
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute("select city_key from ops.refresh_runs where run_id = %s", (run.run_id,))
        started = [key for (key,) in cur.fetchall()]
        record_failures(conn, run.run_id, "manual", "run", pd.DataFrame(
            {"city_key": started, "city": started, "error": INTERRUPTED}))


def _process_alive(pid: int, invocation: str) -> bool:
    """Whether the job process `pid` of this machine still runs that invocation (not a later
    process that got its pid)."""
    if Path("/proc/self").exists():
        try:
            return invocation.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _close_interrupted_runs(address: ServerAddress) -> None:
    """Closes the runs an earlier `materialize` of this machine left unfinished: its job
    process is gone (the command was killed, or the database was still away when it ended)."""
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

    unfinished = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
    with DagsterInstance.get() as instance:
        for record in instance.get_run_records(RunsFilter(
                job_name=MAIN_JOB, statuses=unfinished, tags={HOST_TAG: socket.gethostname()})):
            run = record.dagster_run
            start = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START,
                                                 limit=1).records
            pid = start[0].event_log_entry.dagster_event.pid if start else None
            if pid is not None and not _process_alive(pid, run.tags[INVOCATION_TAG]):
                _close_run(instance, address, run)
                click.echo(f"      run {run.run_id} of an earlier `materialize` was left "
                           "unfinished: marked failed (interrupted)")


def print_summary(summary: RunSummary, address: ServerAddress) -> None:
    """The closing summary: cities refreshed and failed (with the reason), time, where to look."""
    refreshed = int((summary.outcomes["status"] != FAILURE).sum())
    total = len(summary.outcomes)
    click.echo(f"\nRefreshed {refreshed} of {total} cities in {summary.seconds:.1f} s "
               f"(run {summary.run_id or '-'}, {summary.status.lower()}).")
    failed = summary.failed
    if len(failed):
        click.secho(f"{len(failed)} city(ies) failed and keep their last valid results:",
                    fg="red", err=True)
        for row in failed.head(20).itertuples():
            click.echo(f"  {row.city_key}: {row.stage}: {row.error}", err=True)
        if len(failed) > 20:
            click.echo(f"  ... and {len(failed) - 20} more: select * from ops.refresh_operations"
                       f" where run_id = '{summary.run_id}' and status = 'failure'", err=True)
    if summary.status != "SUCCESS":
        click.secho(f"the run ended {summary.status.lower()}: see the event log "
                    f"{summary.log_file}", fg="red", err=True)
    click.echo(f"Marts: schema marts of {address.url(hide_password=True)}")
    click.echo(f"Event log: {summary.log_file}")
    if summary.run_id:
        click.echo(f"In the UI (make ui): http://127.0.0.1:3000/runs/{summary.run_id}")
