"""Connection parameters, the two databases, and the warehouse schemas.

One PostgreSQL server holds two databases: `dagster` (the Dagster instance) and
`warehouse` (the data). The warehouse schema names live here and nowhere else.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import URL, make_url

from refresh_assets.lib.migrations import migrate
from refresh_assets.settings import DAGSTER_DB, WAREHOUSE_DB

RAW_SCHEMA = "raw"
ANALYTICS_SCHEMA = "analytics"
STAGING_SCHEMA = "staging"
INTERMEDIATE_SCHEMA = "intermediate"
MARTS_SCHEMA = "marts"
OPS_SCHEMA = "ops"


@dataclass(frozen=True)
class ServerAddress:
    """How to reach the PostgreSQL server, and which databases on it to use."""

    host: str
    port: int
    user: str
    password: str | None
    warehouse_db: str = WAREHOUSE_DB
    dagster_db: str = DAGSTER_DB

    @classmethod
    def from_url(cls, url: str) -> ServerAddress:
        """Reads a warehouse URL such as `postgresql://user:pw@host:5432/warehouse`."""
        parsed = make_url(url)
        if not parsed.drivername.startswith("postgresql"):
            raise ValueError(f"REFRESH_DATABASE_URL must be a postgresql:// URL, got {parsed!r}")
        return cls(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            warehouse_db=parsed.database or WAREHOUSE_DB,
        )

    def url(self, database: str | None = None, *, hide_password: bool = False) -> str:
        """A `postgresql+psycopg2://` URL (SQLAlchemy 2.1 would pick psycopg 3 otherwise)."""
        return URL.create(
            "postgresql+psycopg2",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database or self.warehouse_db,
        ).render_as_string(hide_password=hide_password)

    def libpq_url(self, database: str | None = None) -> str:
        """A plain `postgresql://` URL, as psql and BI tools take it."""
        return self.url(database).replace("postgresql+psycopg2://", "postgresql://", 1)

    def environment(self) -> dict[str, str]:
        """The variables that dagster.yaml, dbt's profiles.yml and the resources read."""
        return {
            "REFRESH_DB_HOST": self.host,
            "REFRESH_DB_PORT": str(self.port),
            "REFRESH_DB_USER": self.user,
            "REFRESH_DB_PASSWORD": self.password or "",
            "REFRESH_DB_WAREHOUSE": self.warehouse_db,
            "REFRESH_DB_DAGSTER": self.dagster_db,
        }


def connect(address: ServerAddress, database: str | None = None):
    """A psycopg2 connection to one database (the warehouse unless named)."""
    return psycopg2.connect(
        host=address.host,
        port=address.port,
        user=address.user,
        password=address.password,
        dbname=database or address.warehouse_db,
        connect_timeout=10,
        application_name="refresh_assets",
    )


@contextmanager
def warehouse_connection(address: ServerAddress) -> Iterator[psycopg2.extensions.connection]:
    """A warehouse connection that commits on success, rolls back on error, always closes."""
    conn = connect(address)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def ensure_databases(address: ServerAddress) -> list[str]:
    """Creates the dagster and warehouse databases if missing; returns those it created."""
    created = []
    conn = connect(address, "postgres")
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            for name in (address.dagster_db, address.warehouse_db):
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                    created.append(name)
    finally:
        conn.close()
    return created


def migrate_warehouse(address: ServerAddress) -> list[str]:
    """Applies the warehouse's pending schema migrations; returns their file names."""
    conn = connect(address)
    conn.autocommit = True  # each migration commits on its own
    try:
        return [m.path.name for m in migrate(conn)]
    finally:
        conn.close()


@dataclass(frozen=True)
class Bootstrapped:
    databases_created: list[str]
    migrations_applied: list[str]


def bootstrap(address: ServerAddress) -> Bootstrapped:
    """Idempotently prepares the server: both databases, then the warehouse migrations
    (schemas, tables, indexes). The only place where the warehouse's schema changes."""
    created = ensure_databases(address)
    return Bootstrapped(created, migrate_warehouse(address))


def table_row_counts(address: ServerAddress, schema: str) -> dict[str, int]:
    """Rows in each table and view of one warehouse schema (for summaries)."""
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute(
            "select table_name from information_schema.tables where table_schema = %s"
            " order by table_name",
            (schema,),
        )
        names = [row[0] for row in cur.fetchall()]
        counts = {}
        for name in names:
            cur.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, name)))
            counts[name] = cur.fetchone()[0]
    return counts


def copy_frame(cur, table: sql.Composable, frame: pd.DataFrame, columns: Sequence[str],
               float_format: str | None = None) -> None:
    """Appends `frame`'s `columns` to `table` with COPY (empty cells become NULL)."""
    buffer = io.StringIO()
    frame.loc[:, list(columns)].to_csv(buffer, index=False, header=False, float_format=float_format)
    buffer.seek(0)
    column_list = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    cur.copy_expert(
        sql.SQL("copy {} ({}) from stdin with (format csv)").format(table, column_list)
        .as_string(cur.connection),
        buffer,
    )
