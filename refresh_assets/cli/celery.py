"""`refresh-assets celery worker`: a Celery worker that runs the main job's steps when
REFRESH_STEP_EXECUTOR=celery (docs/CELERY.md)."""

from __future__ import annotations

import os

import click

from refresh_assets.cli.common import database_errors, export_environment, settings_or_exit
from refresh_assets.lib.database import check_reachable
from refresh_assets.lib.runtime import running_server_address
from refresh_assets.settings import SettingsError


@click.group()
def celery() -> None:
    """Steps of the main job on Celery workers, Redis as the broker."""


@celery.command()
@click.option("--name", help="The worker's name, unique among the workers  [default: "
                             "steps-<pid>]; the machine's name is appended (NAME@host).")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def worker(name: str | None, loglevel: str) -> None:
    """Run one worker: it takes the main job's steps from the broker (REFRESH_CELERY_BROKER)
    one at a time and runs each in this process, with this machine's settings (the database,
    the entries, reports and exports folders). Start as many as steps should run at once, on
    any machine that reaches the database and the broker and shares those folders. The
    database must be running; Ctrl-C lets the current step finish."""
    settings = settings_or_exit()
    with database_errors():
        address = running_server_address(settings)
        check_reachable(address)
    export_environment(settings, address)
    # Imported here: Dagster is slow to import, and no other command needs this.
    from refresh_assets.defs.executors import (
        CELERY,
        CELERY_BROKER_VARIABLE,
        CELERY_QUEUE,
        STEP_EXECUTOR_VARIABLE,
        celery_lease_seconds,
        celery_worker_app,
    )

    # The definitions as the run that sends the steps loads them.
    os.environ[STEP_EXECUTOR_VARIABLE] = CELERY
    try:
        app = celery_worker_app(os.environ)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    except ImportError as exc:  # dagster-celery is in the dev extras
        raise click.ClickException(f"{exc}: install the project with its dev extras "
                                   "(pip install -e '.[dev]')") from None
    # Loaded once here rather than at the first step, which a missing manifest would fail.
    from refresh_assets.defs.dbt_project import dbt_project

    if not dbt_project.manifest_path.exists():
        raise click.ClickException(f"{dbt_project.manifest_path} is missing: run "
                                   "`refresh-assets dbt prepare` on this machine first")
    import refresh_assets.definitions  # noqa: F401
    from refresh_assets.lib.celery_leases import LeaseRenewer

    # While this worker lives, its step stays its own, however long it runs.
    LeaseRenewer(os.environ[CELERY_BROKER_VARIABLE], celery_lease_seconds(os.environ)).start()
    # The solo pool runs a step in the worker's own process: the change report starts worker
    # processes of its own, which a prefork pool's (daemonic) children may not.
    app.worker_main(["worker", "--pool=solo", f"--queues={CELERY_QUEUE}",
                     f"--hostname={name or f'steps-{os.getpid()}'}@%h",
                     f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"])
