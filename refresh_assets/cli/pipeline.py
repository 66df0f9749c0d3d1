"""`refresh-assets dbt|materialize|demo|ui`: prepare dbt, run the main job, open the UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from refresh_assets.cli.common import export_environment, settings_or_exit, step
from refresh_assets.lib.cities import CITY_PARTITIONS, city_keys_with_data
from refresh_assets.lib.database import MARTS_SCHEMA, table_row_counts
from refresh_assets.lib.embedded_postgres import find_server_binaries
from refresh_assets.lib.run_tags import TRIGGER as TRIGGER_TAG
from refresh_assets.lib.runtime import ensure_database
from refresh_assets.settings import DBT_PROJECT_DIR, PROJECT_DIR, Settings

MAIN_JOB = "refresh_all"


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


def _register_cities(settings: Settings) -> list[str]:
    """Adds every city with data to the instance's city partitions; returns all of them."""
    from dagster import DagsterInstance  # the instance only; the CLI never loads defs/

    with DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(CITY_PARTITIONS))
        missing = [k for k in city_keys_with_data(settings.entries_dir) if k not in known]
        instance.add_dynamic_partitions(CITY_PARTITIONS, missing)
        return list(instance.get_dynamic_partitions(CITY_PARTITIONS))


def _run_main_job(settings: Settings) -> None:
    cities = _register_cities(settings)
    click.echo(f"      {len(cities)} city partitions, refreshed in one run")
    # Every city partition in one run (the partitioned assets have single-run backfill
    # policies), then the dbt models on top.
    tags = {"dagster/asset_partition_range_start": cities[0],
            "dagster/asset_partition_range_end": cities[-1],
            TRIGGER_TAG: "manual"}
    _run(
        [_venv_program("dagster"), "job", "execute", "-m", "refresh_assets.definitions",
         "-j", MAIN_JOB, "--tags", json.dumps(tags)],
        f"the {MAIN_JOB} job failed; its run is in the Dagster UI (make ui)",
    )


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


@click.command()
def materialize() -> None:
    """Run the main job (every asset) on the Dagster instance."""
    with step(1, 3, "database"):
        settings = _ready_environment()
    with step(2, 3, "dbt manifest"):
        _prepare_dbt()
    with step(3, 3, f"materialize every asset (job {MAIN_JOB})"):
        _run_main_job(settings)


@click.command()
def demo() -> None:
    """Start the database, prepare dbt, materialize every asset, and summarise."""
    settings = settings_or_exit()
    with step(1, 4, "database"):
        ready = ensure_database(settings)
        export_environment(settings, ready.address)
        click.echo(f"      {ready.what_happened}")
    with step(2, 4, "dbt manifest"):
        _prepare_dbt()
    with step(3, 4, f"materialize every asset (job {MAIN_JOB})"):
        _run_main_job(settings)
    with step(4, 4, "summary"):
        counts = table_row_counts(ready.address, MARTS_SCHEMA)
        for table, rows in counts.items():
            click.echo(f"      {MARTS_SCHEMA}.{table}: {rows:,} rows")
        example = settings.reports_dir / "vallejo" / "latest.html"
        click.echo(f"      change reports: {settings.reports_dir} (e.g. {example})")
    psql = find_server_binaries(settings.pg_bin) / "psql" if settings.embedded else Path("psql")
    click.echo(
        "\nNext:\n"
        "  make ui                                   Dagster UI with the daemon, http://127.0.0.1:3000\n"
        f"  {psql} \"$(.venv/bin/refresh-assets db url)\"\n"
        "                                            query the warehouse (marts.*)\n"
        "  make stop                                 stop the embedded database"
    )


@click.command()
@click.option("--port", default=3000, show_default=True, help="Port of the UI on 127.0.0.1.")
def ui(port: int) -> None:
    """Start the Dagster UI and daemon (sensors, schedules, run queue) on 127.0.0.1."""
    with step(1, 2, "database"):
        _ready_environment()
    with step(2, 2, "dbt manifest"):
        _prepare_dbt()
    click.echo(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops it; the database keeps running)")
    dagster = _venv_program("dagster")
    os.chdir(PROJECT_DIR)
    os.execv(dagster, [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)])
