"""Which database server to use, and the environment Dagster and dbt are started with.

One path for every caller (CLI, tests, benchmarks): with `REFRESH_DATABASE_URL` set
the project uses that server and starts nothing; otherwise it runs its own cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from refresh_assets.lib.database import ServerAddress, bootstrap
from refresh_assets.lib.embedded_postgres import EmbeddedPostgres
from refresh_assets.settings import PROJECT_DIR, SMTP_VARIABLES, Settings


def embedded_server(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(
        settings.postgres_dir,
        settings.pg_port,
        bin_dir=settings.pg_bin,
        os_user=settings.pg_os_user,
    )


def server_address(settings: Settings) -> ServerAddress:
    """Connection parameters, without starting anything."""
    if settings.database_url:
        return ServerAddress.from_url(settings.database_url)
    return embedded_server(settings).address()


@dataclass(frozen=True)
class DatabaseReady:
    address: ServerAddress
    what_happened: str


def ensure_database(settings: Settings) -> DatabaseReady:
    """Starts the embedded server if it is the one in use, then creates the databases and
    applies the warehouse migrations."""
    if settings.database_url:
        address = ServerAddress.from_url(settings.database_url)
        shown = address.url(hide_password=True)
        what = f"using the server of REFRESH_DATABASE_URL ({shown}); nothing started"
    else:
        server = embedded_server(settings)
        what = f"embedded PostgreSQL: {server.start()}"
        address = server.address()
    done = bootstrap(address)
    if done.databases_created:
        what += f"; created database(s) {', '.join(done.databases_created)}"
    if done.migrations_applied:
        what += f"; applied migration(s) {', '.join(done.migrations_applied)}"
    return DatabaseReady(address, what)


def runtime_environment(settings: Settings, address: ServerAddress) -> dict[str, str]:
    """Variables for Dagster (dagster.yaml), dbt (profiles.yml) and the resources."""
    return {
        **address.environment(),
        "DAGSTER_HOME": str(PROJECT_DIR),
        "REFRESH_DAGSTER_STORAGE": str(settings.dagster_storage_dir),
        "REFRESH_ENTRIES_DIR": str(settings.entries_dir),
        "REFRESH_REPORTS_DIR": str(settings.reports_dir),
        # Dagster writes a step's events in batches instead of one insert (and one new
        # connection) per event: a full refresh writes thousands of them.
        "DAGSTER_EVENT_BATCH_SIZE": os.environ.get("DAGSTER_EVENT_BATCH_SIZE", "500"),
        # The SMTP resource reads these through EnvVar, which refuses an unset variable:
        # unset means "no email", so pass them on as empty strings.
        **{name: os.environ.get(name, "") for name in SMTP_VARIABLES},
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
