"""`refresh-assets notifications` and `refresh-assets ack`: what operators were asked to enter."""

from __future__ import annotations

import getpass

import click
import pandas as pd

from refresh_assets.cli.common import database_errors, settings_or_exit
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.runtime import running_server_address
from refresh_assets.lib.sources.store import NotificationError, acknowledge, list_notifications


@click.command()
@click.option("--pending", is_flag=True, help="Only those not completed yet.")
def notifications(pending: bool) -> None:
    """List the documents operators were asked to enter, with their state
    (pending -> acknowledged -> completed when the entry validates) and their email's."""
    settings = settings_or_exit()
    with database_errors(), warehouse_connection(running_server_address(settings)) as conn:
        table = list_notifications(conn, pending_only=pending)
    if table.empty:
        click.echo("no notifications" + (" pending" if pending else ""))
        return
    table["created_at"] = pd.to_datetime(table["created_at"], utc=True).dt.strftime("%Y-%m-%d %H:%M")
    shown = table[["id", "status", "city_key", "doc_type", "fiscal_year", "email_status",
                   "created_at", "url"]]
    click.echo(shown.to_string(index=False))
    counts = table["status"].value_counts()
    click.echo(f"{len(table)} notification(s): "
               + ", ".join(f"{n} {status}" for status, n in counts.items()))


@click.command()
@click.argument("notification_id", type=int)
@click.option("--by", default=lambda: getpass.getuser(), show_default="your login")
def ack(notification_id: int, by: str) -> None:
    """Acknowledge a notification: someone is entering that document."""
    settings = settings_or_exit()
    try:
        with database_errors(), warehouse_connection(running_server_address(settings)) as conn:
            before = acknowledge(conn, notification_id, by)
    except NotificationError as exc:
        raise click.ClickException(str(exc)) from None
    if before == "pending":
        click.echo(f"notification {notification_id} acknowledged by {by}")
    else:
        click.echo(f"notification {notification_id} is {before} already; left as it is")
