"""Helpers shared by the command modules."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click

from refresh_assets.lib.database import DatabaseUnavailable, ServerAddress
from refresh_assets.lib.embedded_postgres import EmbeddedPostgresError
from refresh_assets.lib.runtime import runtime_environment, unavailable_message
from refresh_assets.settings import Settings, SettingsError, load_settings


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def export_environment(settings: Settings, address: ServerAddress) -> None:
    """Makes Dagster, dbt and every subprocess see the database in use."""
    os.environ.update(runtime_environment(settings, address))


@contextmanager
def database_errors() -> Iterator[None]:
    """Turns the known faults of the settings and the database server into one-line errors
    that say what to do, instead of tracebacks."""
    try:
        yield
    except DatabaseUnavailable as exc:
        # Settings loaded before the fault, so loading them again cannot fail.
        raise click.ClickException(unavailable_message(load_settings(), exc)) from None
    except (SettingsError, EmbeddedPostgresError) as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def step(number: int, total: int, title: str) -> Iterator[None]:
    """Prints a numbered step with how long it took; turns known faults into clear errors."""
    click.secho(f"[{number}/{total}] {title}", bold=True)
    started = time.perf_counter()
    with database_errors():
        yield
    click.echo(f"      done in {time.perf_counter() - started:.1f} s")
