"""`refresh-assets db`: the PostgreSQL server (embedded unless REFRESH_DATABASE_URL is set)."""

from __future__ import annotations

import click

from refresh_assets.cli.common import database_errors, settings_or_exit
from refresh_assets.lib.runtime import embedded_server, ensure_database, server_address


@click.group()
def db() -> None:
    """Start, stop and locate the database server."""


@db.command()
def start() -> None:
    """Start the embedded server (if it is the one in use) and create databases and schemas."""
    with database_errors():
        ready = ensure_database(settings_or_exit())
    click.echo(ready.what_happened)


@db.command()
def stop() -> None:
    """Stop the embedded server."""
    settings = settings_or_exit()
    if not settings.embedded:
        click.echo("REFRESH_DATABASE_URL is set: the server is not ours to stop; nothing done")
        return
    with database_errors():
        click.echo(embedded_server(settings).stop())


@db.command()
def status() -> None:
    """Say which server is in use and whether it runs. Exit status 1 if it does not."""
    settings = settings_or_exit()
    if not settings.embedded:
        with database_errors():
            click.echo(f"external server: {server_address(settings).url(hide_password=True)}")
        return
    server = embedded_server(settings)
    with database_errors():
        state = server.status()
    click.echo(f"embedded cluster: {server.data_dir}")
    if state.running:
        click.echo(f"running: pid {state.pid}, 127.0.0.1:{state.port}")
        return
    click.echo("not running" + (" (stale pid file from an unclean shutdown)" if state.stale_pid_file else ""))
    raise SystemExit(1)


@db.command()
@click.option("--database", type=click.Choice(["warehouse", "dagster"]), default="warehouse",
              show_default=True)
def url(database: str) -> None:
    """Print the connection URL (with its password: keep it out of logs)."""
    with database_errors():
        address = server_address(settings_or_exit())
    name = address.warehouse_db if database == "warehouse" else address.dagster_db
    click.echo(address.libpq_url(name))
