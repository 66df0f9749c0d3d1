"""`refresh-assets dbt|materialize|demo|ui`: prepare dbt, run the main job, open the UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

from refresh_assets.cli.common import export_environment, settings_or_exit, step
from refresh_assets.cli.progress import MAIN_JOB, print_summary, run_main_job
from refresh_assets.lib.alerts import describe_overdue, overdue_filings
from refresh_assets.lib.database import (
    MARTS_SCHEMA,
    forecast_snapshot_days,
    table_row_counts,
    warehouse_connection,
)
from refresh_assets.lib.embedded_postgres import find_server_binaries, port_is_free
from refresh_assets.lib.runtime import ensure_database, server_address
from refresh_assets.settings import DBT_PROJECT_DIR, PROJECT_DIR, Settings


def _venv_program(name: str) -> str:
    """A console script installed beside this Python (the project's virtual environment)."""
    return str(Path(sys.executable).parent / name)


def _run(command: list[str], failure: str) -> None:
    result = subprocess.run(command, cwd=PROJECT_DIR, check=False)
    if result.returncode != 0:
        raise click.ClickException(f"{failure} (exit {result.returncode})")


def _prepare_dbt() -> None:
    # Writes dbt_project/target/manifest.json, which the definitions load; no database needed.
    _run(
        [_venv_program("dbt"), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR)],
        "dbt parse failed",
    )


def _take_snapshots(days: list[date]) -> None:
    """One run of the snapshot job per day, as the daily schedule launches it: the day's
    snapshot, the retention, then the backtest (output kept quiet unless a run fails)."""
    for day in days:
        command = [_venv_program("dagster"), "job", "execute", "-m", "refresh_assets.definitions",
                   "-j", "forecast_snapshot", "--tags",
                   json.dumps({"dagster/partition": day.isoformat()})]
        result = subprocess.run(command, cwd=PROJECT_DIR, check=False, capture_output=True,
                                text=True)
        if result.returncode != 0:
            click.echo(result.stdout[-4000:] + result.stderr[-4000:], err=True)
            raise click.ClickException(f"the forecast snapshot of {day} failed "
                                       f"(exit {result.returncode}); the run's log is above")
        click.echo(f"      snapshot of {day} taken; marts.forecast_backtest rebuilt")


def _ready_environment() -> Settings:
    settings = settings_or_exit()
    export_environment(settings, ensure_database(settings).address)
    return settings


@click.group()
def dbt() -> None:
    """The dbt project."""


@dbt.command()
def prepare() -> None:
    """Write the dbt manifest that Dagster loads (dbt parse)."""
    with step(1, 2, "database"):
        _ready_environment()
    with step(2, 2, "dbt manifest"):
        _prepare_dbt()


@dbt.command()
@click.argument("paths", nargs=-1)
def lint(paths: tuple[str, ...]) -> None:
    """Check the dbt project's SQL with sqlfluff and its dbt templater (style in .sqlfluff).
    The templater compiles the models, which needs the database."""
    with step(1, 2, "database"):
        _ready_environment()
    # Compiled into a folder of its own: the manifest Dagster loads stays untouched.
    with step(2, 2, "sqlfluff lint"), tempfile.TemporaryDirectory() as target:
        result = subprocess.run(
            [_venv_program("sqlfluff"), "lint", *(paths or ["dbt_project/models"])],
            cwd=PROJECT_DIR, env=os.environ | {"DBT_TARGET_PATH": target}, check=False)
    if result.returncode != 0:
        raise click.ClickException("sqlfluff found style violations (listed above); "
                                   "`.venv/bin/sqlfluff fix PATH` fixes most of them")


verbose_option = click.option("--verbose", is_flag=True,
                              help="Stream Dagster's event log instead of the progress display.")


@click.command()
@verbose_option
def materialize(verbose: bool) -> None:
    """Refresh every city: all assets in one run, then the dbt models. Exit status 1 if any
    city failed (the others are refreshed all the same) or the run failed."""
    with step(1, 3, "database"):
        settings = _ready_environment()
    with step(2, 3, "dbt manifest"):
        _prepare_dbt()
    with step(3, 3, f"materialize every asset (job {MAIN_JOB})"):
        address = server_address(settings)
        summary = run_main_job(settings, address, verbose)
    print_summary(summary, address)
    if not summary.ok:
        raise SystemExit(1)


@click.command()
@verbose_option
def demo(verbose: bool) -> None:
    """Start the database, prepare dbt, materialize every asset, and summarise."""
    settings = settings_or_exit()
    with step(1, 5, "database"):
        ready = ensure_database(settings)
        export_environment(settings, ready.address)
        click.echo(f"      {ready.what_happened}")
    with step(2, 5, "dbt manifest"):
        _prepare_dbt()
    with step(3, 5, f"materialize every asset (job {MAIN_JOB})"):
        summary = run_main_job(settings, ready.address, verbose)
    with step(4, 5, "forecast snapshots of yesterday and today (UTC), with the backtest"):
        today = _utc_today()
        _take_snapshots([today - timedelta(days=1), today])
    with step(5, 5, "summary"):
        counts = table_row_counts(ready.address, MARTS_SCHEMA)
        for table, rows in counts.items():
            click.echo(f"      {MARTS_SCHEMA}.{table}: {rows:,} rows")
        example = settings.reports_dir / "vallejo" / "latest.html"
        click.echo(f"      change reports: {settings.reports_dir} (e.g. {example})")
        click.echo(f"      per-city exports: {settings.exports_dir}")
        with warehouse_connection(ready.address) as conn:
            overdue = describe_overdue(overdue_filings(conn))
        click.echo(f"      filings overdue: {overdue} (marts.filing_status)")
    print_summary(summary, ready.address)
    psql = find_server_binaries(settings.pg_bin) / "psql" if settings.embedded else Path("psql")
    click.echo(
        "\nNext:\n"
        "  make ui                                   Dagster UI with the daemon, http://127.0.0.1:3000\n"
        "  .venv/bin/refresh-assets ui --viewer      a read-only UI for everyone else, :3001\n"
        "  make bi                                   the Superset dashboard, http://127.0.0.1:8088\n"
        "  .venv/bin/refresh-assets metrics serve    /metrics for Prometheus, :9464\n"
        "  .venv/bin/refresh-assets export --city Vallejo --format csv\n"
        "                                            one city's files (scores, forecast, status)\n"
        f"  {psql} \"$(.venv/bin/refresh-assets db url)\"\n"
        "                                            query the warehouse (marts.*)\n"
        "  REFRESH_BI_PASSWORD=... .venv/bin/refresh-assets bi grant\n"
        "                                            a read-only role for BI tools (marts only)\n"
        "  .venv/bin/refresh-assets docs             the dbt docs site, http://127.0.0.1:8580\n"
        "  make stop                                 stop the embedded database"
    )
    if not summary.ok:
        raise SystemExit(1)


@click.command()
@click.option("--port", default=8580, show_default=True, help="Port of the site on 127.0.0.1.")
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Serve the site after generating it (Ctrl-C stops it).")
def docs(port: int, serve: bool) -> None:
    """Generate the dbt docs site (models, columns, tests, lineage down to the BI exposures)
    and serve it on 127.0.0.1."""
    with step(1, 2, "database"):
        settings = _ready_environment()
    site = settings.home / "dbt_docs"
    dbt_args = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
                "--target-path", str(site)]
    with step(2, 2, "dbt docs generate (reads the warehouse's catalog)"):
        _run([_venv_program("dbt"), "docs", "generate", "--quiet", *dbt_args],
             "dbt docs generate failed")
        click.echo(f"      site: {site / 'index.html'}")
    if serve:
        click.echo(f"dbt docs: http://127.0.0.1:{port}  (Ctrl-C stops it)")
        os.chdir(PROJECT_DIR)
        dbt_program = _venv_program("dbt")
        os.execv(dbt_program, [dbt_program, "docs", "serve", "--host", "127.0.0.1", "--port",
                               str(port), "--no-browser", *dbt_args])


def _utc_today() -> date:
    return datetime.now(UTC).date()


@click.command()
@click.option("--day", "days", multiple=True, type=click.DateTime(["%Y-%m-%d"]),
              help="UTC day to snapshot (repeatable); default today. Re-taking a day replaces it.")
def snapshot(days: tuple[datetime, ...]) -> None:
    """Take the daily snapshot of marts.city_forecast by hand (the schedule takes each day at
    03:10 UTC), apply the retention, and rebuild the backtest."""
    with step(1, 3, "database"):
        settings = _ready_environment()
    with step(2, 3, "dbt manifest"):
        _prepare_dbt()
    with step(3, 3, "snapshots"):
        _take_snapshots([d.date() for d in days] or [_utc_today()])
    kept = forecast_snapshot_days(server_address(settings))
    click.echo(f"{len(kept)} day(s) kept in {MARTS_SCHEMA}.city_forecast_snapshots"
               + (f", {kept[0][0]} to {kept[-1][0]}" if kept else ""))


OPERATOR_PORT, VIEWER_PORT = 3000, 3001


@click.command()
@click.option("--port", type=int, help=f"Port on 127.0.0.1  [default: {OPERATOR_PORT}, "
                                       f"{VIEWER_PORT} with --viewer]")
@click.option("--viewer", is_flag=True,
              help="A read-only webserver for everyone else: no launching, no toggling of "
                   "sensors and schedules, no daemon (run it beside the operators' UI).")
def ui(port: int | None, viewer: bool) -> None:
    """Start the Dagster UI and daemon (sensors, schedules, run queue) on 127.0.0.1, or with
    --viewer a read-only webserver on a port of its own (docs/ACCESS.md)."""
    port = port if port is not None else VIEWER_PORT if viewer else OPERATOR_PORT
    # Checked first: the webserver would say it only in a traceback, after the steps below.
    if not port_is_free(port):
        raise click.ClickException(f"port {port} on 127.0.0.1 is in use (another UI?): "
                                   "stop it or pass --port N")
    with step(1, 2, "database"):
        _ready_environment()
    with step(2, 2, "dbt manifest"):
        _prepare_dbt()
    where = ["-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"]
    if viewer:
        click.echo(f"Dagster UI, read-only: http://127.0.0.1:{port}  (Ctrl-C stops it; the "
                   "operators' UI and the database keep running)")
        program, arguments = _venv_program("dagster-webserver"), ["--read-only", *where]
    else:
        click.echo(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops it; the database keeps "
                   "running)")
        program, arguments = _venv_program("dagster"), ["dev", *where]
    os.chdir(PROJECT_DIR)
    os.execv(program, [program, *arguments])
