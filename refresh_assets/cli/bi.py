"""`refresh-assets bi`: access for BI tools, and Superset with the fiscal-health dashboard."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from refresh_assets.cli.common import database_errors, settings_or_exit, step
from refresh_assets.lib.bi_access import DEFAULT_ROLE, READABLE_SCHEMA, BiAccessError, grant_bi_reader
from refresh_assets.lib.runtime import ensure_database, running_server_address
from refresh_assets.lib.superset import (
    ADMIN_PASSWORD_VARIABLE,
    ADMIN_USER,
    BUNDLE_DIR,
    SUPERSET_VERSION,
    SupersetError,
    admin_password,
    bi_reader_password,
    configure,
    dashboard_url,
    import_dashboard,
    install,
    marts_without_rows,
    port_in_use,
    server_command,
    superset_home,
    upgrade_metadata,
)


@click.group()
def bi() -> None:
    """Access for BI tools, and a ready Superset dashboard."""


@bi.command()
@click.option("--role", default=DEFAULT_ROLE, show_default=True)
def grant(role: str) -> None:
    """Create or update a read-only role that can read the marts and nothing else
    (password from REFRESH_BI_PASSWORD)."""
    password = os.environ.get("REFRESH_BI_PASSWORD", "")
    if not password:
        raise click.ClickException("set REFRESH_BI_PASSWORD to the BI role's password first "
                                   "(at least 12 characters)")
    settings = settings_or_exit()
    try:
        with database_errors():
            address = running_server_address(settings)
            created = grant_bi_reader(address, password, role)
    except BiAccessError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"role {role} {'created' if created else 'updated'}: SELECT on schema "
               f"{READABLE_SCHEMA} (present and future tables), nothing else")
    click.echo(f"connect with: postgresql://{role}:$REFRESH_BI_PASSWORD@{address.host}:{address.port}/"
               f"{address.warehouse_db}")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except (SupersetError, BiAccessError) as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _spinner(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the elapsed time on a terminal (nothing elsewhere); the function it
    gives shows a line of progress beside the title."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  transient=True, disable=not sys.stdout.isatty()) as progress:
        task = progress.add_task(f"      {title}")
        yield lambda line: progress.update(task, description=f"      {title}: {line[:60]}")


def _pip_progress(show: Callable[[str], None]) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        if line.startswith("Collecting "):
            show(line)
        elif line.startswith("Installing collected packages"):
            show("installing the packages")
    return on_line


@bi.command()
@click.option("--port", default=8088, show_default=True, help="Port of Superset on 127.0.0.1.")
def superset(port: int) -> None:
    """Start Apache Superset on 127.0.0.1 with the fiscal-health dashboard (bi/superset/),
    reading the marts as the read-only role bi_reader. The first start installs Superset in
    its own virtual environment under REFRESH_HOME (a few minutes); each start re-imports
    the dashboard, overwriting the one before."""
    if port_in_use(port):
        raise click.ClickException(f"port {port} on 127.0.0.1 is in use (a Superset started "
                                   "before?): stop it, or choose another with --port")
    settings = settings_or_exit()
    home = superset_home(settings)
    with step(1, 5, "database"):
        ready = ensure_database(settings)
        click.echo(f"      {ready.what_happened}")
    with step(2, 5, f"read-only role {DEFAULT_ROLE}"), _one_line_errors():
        password = bi_reader_password(settings, home, os.environ)
        created = grant_bi_reader(ready.address, password.value)
        click.echo(f"      {'created' if created else 'updated'}, password from {password.origin}")
        for mart in marts_without_rows(ready.address, password.value):
            click.secho(f"      {mart} has no rows yet: its charts fill in after `make demo` "
                        "(or `refresh-assets materialize`)", fg="yellow")
    with step(3, 5, f"Superset {SUPERSET_VERSION} in {home.venv}"), _one_line_errors():
        with _spinner("pip install (the first time only, a few minutes)") as show:
            installed = install(home, _pip_progress(show))
        click.echo("      installed already" if installed is None else
                   f"      {installed} packages installed; pip's output: {home.install_log}")
    with step(4, 5, f"Superset's metadata in {home.metadata_db} (db upgrade, init)"), \
            _one_line_errors():
        env = configure(home)
        with _spinner("superset db upgrade, superset init"):
            upgrade_metadata(home, env)
    with step(5, 5, f"dashboard from {BUNDLE_DIR} (imported over the one before)"), \
            _one_line_errors():
        admin = admin_password(home, os.environ)
        with _spinner("admin user and import"):
            import_dashboard(home, env, ready.address, password.value, admin)
    where = (f"${ADMIN_PASSWORD_VARIABLE}" if admin.origin == ADMIN_PASSWORD_VARIABLE
             else f"the file {admin.origin}")
    click.echo(f"Superset: {dashboard_url(port)}  log in as {ADMIN_USER} with the password in "
               f"{where}  (Ctrl-C stops it; the database keeps running)")
    command = server_command(home, port)
    os.execve(command[0], command, env)
