"""`refresh-assets bi`: access for BI tools."""

from __future__ import annotations

import os

import click

from refresh_assets.cli.common import database_errors, settings_or_exit
from refresh_assets.lib.bi_access import DEFAULT_ROLE, READABLE_SCHEMA, BiAccessError, grant_bi_reader
from refresh_assets.lib.runtime import running_server_address


@click.group()
def bi() -> None:
    """Access for BI tools."""


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
