"""Connection parameters, the two databases, and the warehouse schemas.

One PostgreSQL server holds two databases: `dagster` (the Dagster instance) and
`warehouse` (the data). The warehouse schema names live here and nowhere else.
"""

from __future__ import annotations

import enum
import io
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from refresh_assets.lib.migrations import migrate
from refresh_assets.settings import DAGSTER_DB, WAREHOUSE_DB, SettingsError

RAW_SCHEMA = "raw"
ANALYTICS_SCHEMA = "analytics"
MARTS_SCHEMA = "marts"
OPS_SCHEMA = "ops"
CONNECT_TIMEOUT_S = 10
URL_FORM = "postgresql://user:password@host:port/warehouse"


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
        """Reads a warehouse URL such as `postgresql://user:pw@host:5432/warehouse`; raises
        SettingsError, naming REFRESH_DATABASE_URL but never its password, if it cannot."""
        fix = f"set it to {URL_FORM}, or unset it to use the embedded server"
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):  # unparseable, or a port that is not a number
            # The value is not shown: where its password starts is unknown.
            raise SettingsError(f"REFRESH_DATABASE_URL is not a valid URL: {fix}") from None
        if not parsed.drivername.startswith("postgresql"):
            raise SettingsError(f"REFRESH_DATABASE_URL={parsed!r} is not a PostgreSQL URL: {fix}")
        port = parsed.port or 5432
        if not 1 <= port <= 65535:
            raise SettingsError(f"REFRESH_DATABASE_URL={parsed!r}: port {port} is not between "
                                f"1 and 65535: {fix}")
        return cls(
            host=parsed.host or "127.0.0.1",
            port=port,
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


class Unreachable(enum.Enum):
    """Why a connection failed, as far as libpq's message tells."""

    NOT_LISTENING = enum.auto()
    UNKNOWN_HOST = enum.auto()
    NO_ANSWER = enum.auto()
    NOT_POSTGRES = enum.auto()
    LOGIN_REFUSED = enum.auto()
    NO_DATABASE = enum.auto()
    OTHER = enum.auto()


class DatabaseUnavailable(RuntimeError):
    """A PostgreSQL server cannot be used. The message says why in plain words, naming host
    and port, never the password; `why` lets the caller say what to do about it."""

    def __init__(self, why: Unreachable, message: str):
        super().__init__(message)
        self.why = why


# libpq's words (and the server's, in the C locale the embedded server runs in) for each case.
_SIGNS = (
    ("Connection refused", Unreachable.NOT_LISTENING),
    ("could not translate host name", Unreachable.UNKNOWN_HOST),
    ("timeout expired", Unreachable.NO_ANSWER),
    ("invalid response to SSL negotiation", Unreachable.NOT_POSTGRES),
    ("expected authentication request from server", Unreachable.NOT_POSTGRES),
    ("server closed the connection unexpectedly", Unreachable.NOT_POSTGRES),
    ("password authentication failed", Unreachable.LOGIN_REFUSED),
    ("no password supplied", Unreachable.LOGIN_REFUSED),
)
_NO_DATABASE = re.compile(r'database ".*" does not exist')


def classify_connection_failure(libpq_message: str) -> Unreachable:
    """Why a connection failed, from the message of psycopg2's OperationalError."""
    for sign, why in _SIGNS:
        if sign in libpq_message:
            return why
    return Unreachable.NO_DATABASE if _NO_DATABASE.search(libpq_message) else Unreachable.OTHER


def describe_connection_failure(why: Unreachable, address: ServerAddress, database: str,
                                libpq_message: str) -> str:
    """What went wrong, in plain words (libpq's messages never hold the password)."""
    where = f"{address.host}:{address.port}"
    if why is Unreachable.NOT_LISTENING:
        return f"nothing is listening on {where} (connection refused)"
    if why is Unreachable.UNKNOWN_HOST:
        return f"the host {address.host!r} is not known (name lookup failed)"
    if why is Unreachable.NO_ANSWER:
        return f"{where} did not answer within {CONNECT_TIMEOUT_S} s"
    if why is Unreachable.NOT_POSTGRES:
        return f"the program on {where} does not answer as a PostgreSQL server"
    if why is Unreachable.LOGIN_REFUSED:
        return f"the server on {where} refused the login of user {address.user!r} (wrong password?)"
    if why is Unreachable.NO_DATABASE:
        return f"the server on {where} has no database {database!r}"
    first_line = libpq_message.strip().splitlines()[0] if libpq_message.strip() else "no reason given"
    cause = re.sub(r"^connection to server at .*? failed: (FATAL: +)?", "", first_line)
    return f"connecting to {where} failed: {cause}"


def _accepts_tcp(address: ServerAddress) -> bool:
    try:
        with socket.create_connection((address.host, address.port), timeout=2):
            return True
    except OSError:
        return False


def connect(address: ServerAddress, database: str | None = None, *,
            application_name: str = "refresh_assets"):
    """A psycopg2 connection to one database (the warehouse unless named); raises
    DatabaseUnavailable if the server cannot be reached or refuses it. `application_name`
    is what pg_stat_activity shows (the city locks name their run there)."""
    dbname = database or address.warehouse_db
    try:
        return psycopg2.connect(
            host=address.host,
            port=address.port,
            user=address.user,
            password=address.password,
            dbname=dbname,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=application_name[:63],  # PostgreSQL keeps 63 bytes
        )
    except psycopg2.OperationalError as exc:
        why = classify_connection_failure(str(exc))
        if why is Unreachable.NO_ANSWER and _accepts_tcp(address):
            # A server of another protocol (HTTP) accepts the connection, then waits for a
            # request line that libpq never sends: libpq only sees its timeout.
            why = Unreachable.NOT_POSTGRES
        raise DatabaseUnavailable(why, describe_connection_failure(why, address, dbname, str(exc))) from exc


def check_reachable(address: ServerAddress, database: str | None = None) -> None:
    """Raises DatabaseUnavailable unless the server lets us into `database` (the warehouse
    unless named): for callers whose own client (Dagster's) would only give a traceback."""
    connect(address, database).close()


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
    """Rows in each table, view and materialized view of one warehouse schema (for
    summaries; information_schema leaves materialized views out, pg_class does not)."""
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute(
            "select c.relname from pg_class as c join pg_namespace as n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relkind in ('r', 'v', 'm', 'p') order by c.relname",
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


def append_changed_versions(cur, table: sql.Identifier, frame: pd.DataFrame, columns: Sequence[str],
                            *, generated: Sequence[str], order_by: Sequence[str],
                            returning: Sequence[str]) -> list[tuple]:
    """Appends to an append-only versions table (`source_path`, `source_checksum`, a version
    sequence first among `generated`) the rows of `frame` whose checksum differs from the
    latest version of their source; an unchanged source adds nothing. Staged through a
    temporary copy of the table, in the caller's transaction. Returns the `returning`
    columns of the rows inserted, in `order_by` order."""
    incoming = sql.Identifier("pg_temp", f"incoming_{table.strings[-1]}")

    def identifiers(names: Sequence[str]) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(name) for name in names)

    cur.execute(sql.SQL("drop table if exists {}").format(incoming))
    cur.execute(sql.SQL("create temporary table {} (like {} including defaults) on commit drop")
                .format(incoming, table))
    cur.execute(sql.SQL("alter table {} ").format(incoming)
                + sql.SQL(", ").join(sql.SQL("drop column {}").format(sql.Identifier(c))
                                     for c in generated))
    copy_frame(cur, incoming, frame, columns)
    cur.execute(sql.SQL("""
        insert into {table} ({columns})
        select {columns} from {incoming} as new
        where new.source_checksum is distinct from (
            select latest.source_checksum from {table} as latest
            where latest.source_path = new.source_path
            order by latest.{version} desc limit 1)
        order by {order_by}
        returning {returning}
    """).format(table=table, columns=identifiers(columns), incoming=incoming,
                version=sql.Identifier(generated[0]),
                order_by=sql.SQL(", ").join(sql.SQL("new.") + sql.Identifier(c) for c in order_by),
                returning=identifiers(returning)))
    return cur.fetchall()


def forecast_snapshot_days(address: ServerAddress) -> list[tuple[str, int]]:
    """The days kept in marts.city_forecast_snapshots with their rows, oldest first."""
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('marts.city_forecast_snapshots') is not null")
        if not cur.fetchone()[0]:
            return []
        cur.execute("select snapshot_date::text, count(*) from marts.city_forecast_snapshots"
                    " group by snapshot_date order by snapshot_date")
        return cur.fetchall()


def table_columns(conn, tables: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(name, type) of the columns of `tables` (schema, table), in table then column order;
    a name met again in a later table is left out."""
    with conn.cursor() as cur:
        cur.execute(
            "select table_schema, table_name, column_name, data_type"
            " from information_schema.columns"
            " where (table_schema, table_name) in (select * from unnest(%s::text[], %s::text[]))"
            " order by table_schema, table_name, ordinal_position",
            ([schema for schema, _ in tables], [table for _, table in tables]),
        )
        by_table: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, data_type in cur.fetchall():
            by_table.setdefault((schema, table), []).append((column, data_type))
    seen, columns = set(), []
    for table in tables:
        for column, data_type in by_table.get(tuple(table), []):
            if column not in seen:
                seen.add(column)
                columns.append((column, data_type))
    return columns
