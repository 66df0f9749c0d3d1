"""`refresh-assets export`: each city's scores, forecast, validation issues and status from the
marts, as CSV or Parquet files with a manifest (docs/EXPORTS.md)."""

from __future__ import annotations

import time
from pathlib import Path

import click
from psycopg2 import errors
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from refresh_assets.cli.common import database_errors, settings_or_exit
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.exports import (
    FORMATS,
    LAST_VALID,
    NO_DATA,
    ExportError,
    ExportResult,
    city_catalog,
    read_marts,
    resolve_cities,
    write_exports,
)
from refresh_assets.lib.runtime import running_server_address

LISTED = 20  # cities named in the summary; the rest are counted


@click.command("export")
@click.option("--city", "cities", multiple=True, metavar="NAME",
              help="A city's name or key (repeatable); default: every city in the marts.")
@click.option("--format", "file_format", type=click.Choice(FORMATS), default="parquet",
              show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write <format>/<city_key>/ into; default REFRESH_EXPORTS_DIR.")
def export(cities: tuple[str, ...], file_format: str, out: Path | None) -> None:
    """Export each city's scores, forecast, validation issues and status from the marts. A
    city whose latest refresh failed exports its last valid data, marked `last_valid`."""
    settings = settings_or_exit()
    out = (out or settings.exports_dir).resolve()
    started = time.perf_counter()
    try:
        with database_errors():
            address = running_server_address(settings)
            with warehouse_connection(address) as conn:
                catalog = city_catalog(conn)
            keys = resolve_cities(cities, catalog) if cities else sorted(catalog)
            if not keys:
                raise click.ClickException("the marts have no city yet: run "
                                           "`refresh-assets materialize` first")
            with warehouse_connection(address) as conn:
                data = read_marts(conn, keys)
    except errors.UndefinedTable as exc:  # a warehouse whose marts dbt never built
        raise click.ClickException(f"the marts are not built ({exc.diag.message_primary}): run "
                                   "`refresh-assets materialize` first") from None
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None

    click.echo(f"exporting {len(data)} city(ies) as {file_format} into {out / file_format}")
    console = Console(width=100)
    progress = Progress(TextColumn("  {task.description}"), BarColumn(bar_width=30),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=True, disable=not console.is_terminal)
    with progress:
        task = progress.add_task("cities", total=len(data))
        result = write_exports(data, out, file_format,
                               on_city=lambda _: progress.advance(task))
    _summary(result, time.perf_counter() - started)


def _summary(result: ExportResult, seconds: float) -> None:
    rows = result.rows
    click.echo(f"Exported {len(result.cities)} city(ies) in {seconds:.1f} s: "
               + ", ".join(f"{rows[name]:,} {name} rows" for name in rows)
               + f"; files and manifest.json per city in {result.folder}/<city_key>/")
    last_valid = result.with_status(LAST_VALID)
    if last_valid:
        click.secho(f"{len(last_valid)} city(ies) export their last valid data (their latest "
                    "refresh failed; data_status = last_valid):", fg="yellow")
        for city in last_valid[:LISTED]:
            when = f" on {city.failed_at:%Y-%m-%d %H:%M} UTC" if city.failed_at else ""
            click.echo(f"  {city.city_key}: failed at {city.failure_stage}{when}: "
                       f"{city.failure_reason}")
    empty = result.with_status(NO_DATA)
    if empty:
        click.echo(f"{len(empty)} city(ies) have no score and no forecast yet (data_status = "
                   f"none): {', '.join(c.city_key for c in empty[:LISTED])}")
    for listed in (last_valid, empty):
        if len(listed) > LISTED:
            click.echo(f"  ... and {len(listed) - LISTED} more: see data_status in their "
                       "status files")
