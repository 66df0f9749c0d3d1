"""Which database server to use, and the environment Dagster and dbt are started with.

One path for every caller (CLI, tests, benchmarks): with `REFRESH_DATABASE_URL` set
the project uses that server and starts nothing; otherwise it runs its own cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from refresh_assets.lib.database import DatabaseUnavailable, ServerAddress, Unreachable, bootstrap
from refresh_assets.lib.embedded_postgres import EmbeddedPostgres
from refresh_assets.settings import PROJECT_DIR, SLACK_VARIABLES, SMTP_VARIABLES, Settings


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


NOT_RUNNING = "the database is not running: start it with `refresh-assets db start` (or `make demo`)"

# What to do, per failure, about the server of REFRESH_DATABASE_URL.
_EXTERNAL_FIXES = {
    Unreachable.NOT_LISTENING: "start that server, or correct the host and port in "
                               "REFRESH_DATABASE_URL (unset it to use the embedded server)",
    Unreachable.UNKNOWN_HOST: "correct the host in REFRESH_DATABASE_URL",
    Unreachable.NO_ANSWER: "check the host and port in REFRESH_DATABASE_URL and any firewall between",
    Unreachable.NOT_POSTGRES: "correct the port in REFRESH_DATABASE_URL (PostgreSQL's is usually 5432)",
    Unreachable.LOGIN_REFUSED: "correct the user and password in REFRESH_DATABASE_URL",
    Unreachable.NO_DATABASE: "`refresh-assets db start` creates the dagster and warehouse databases",
    Unreachable.OTHER: "check REFRESH_DATABASE_URL and that server",
}


def running_server_address(settings: Settings) -> ServerAddress:
    """The address, for commands that need the database but do not start it: raises
    DatabaseUnavailable at once if the embedded server is in use and not running."""
    if settings.embedded and not embedded_server(settings).status().running:
        raise DatabaseUnavailable(Unreachable.NOT_LISTENING, NOT_RUNNING)
    return server_address(settings)


def unavailable_message(settings: Settings, error: DatabaseUnavailable) -> str:
    """One line naming the server in use (its setting, never the password), what went wrong
    and what to do."""
    if settings.database_url:
        shown = server_address(settings).url(hide_password=True).replace(
            "postgresql+psycopg2://", "postgresql://", 1)
        return f"REFRESH_DATABASE_URL={shown}: {error}: {_EXTERNAL_FIXES[error.why]}"
    if error.why is Unreachable.NOT_LISTENING:
        return NOT_RUNNING
    if error.why is Unreachable.NO_DATABASE:
        return f"the embedded database: {error}: create it with `refresh-assets db start`"
    server = embedded_server(settings)
    return (f"the embedded database (REFRESH_PG_PORT={settings.pg_port}): {error}: "
            f"see `refresh-assets db status` and {server.log_file}")


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
        "REFRESH_SOURCES_FILE": str(settings.sources_file),
        "REFRESH_DOCUMENTS_DIR": str(settings.documents_dir),
        "REFRESH_EXPORTS_DIR": str(settings.exports_dir),
        # The filing deadlines, validated above, for dbt's filing_status model (env_var).
        "ACFR_FISCAL_YEAR_END_MONTH": str(settings.fiscal_year_end_month),
        "ACFR_DUE_MONTHS": str(settings.acfr_due_months),
        "CALPERS_VALUATION_DUE_MONTHS": str(settings.calpers_due_months),
        # Dagster writes a step's events in batches instead of one insert (and one new
        # connection) per event: a full refresh writes thousands of them.
        "DAGSTER_EVENT_BATCH_SIZE": os.environ.get("DAGSTER_EVENT_BATCH_SIZE", "500"),
        # One "materialization planned" event per asset for a run over a range of cities,
        # instead of one per city written one by one (2,400 inserts, ~27 s, for 477 cities).
        # Dagster's trade-off: a failed run does not mark each city's partition as failed in
        # the UI; ops.refresh_operations records each city's failure all the same.
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": os.environ.get(
            "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true"),
        # The SMTP and Slack resources read these through EnvVar, which refuses an unset variable:
        # unset means "no email", so pass them on as empty strings.
        **{name: os.environ.get(name, "") for name in (*SMTP_VARIABLES, *SLACK_VARIABLES)},
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
