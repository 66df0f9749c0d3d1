"""Numbered schema migrations of the warehouse, applied once at bootstrap.

Every table, index and constraint is created here and nowhere else: an asset's
transaction only reads and writes rows, so two refreshes never take the locks DDL takes
(`create index if not exists` holds a SHARE lock that conflicts with another run's writes).

A migration is a file `NNNN_name.sql` in this folder; `ops.schema_migrations` records the
ones applied. Each runs in its own transaction, and the whole step holds an advisory lock,
so two processes bootstrapping at once (a demo and a test, two workers) apply each
migration exactly once. A migration is never edited once released: add the next number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2

FOLDER = Path(__file__).parent
NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key of the migration step (any constant no other lock of ours uses).
MIGRATION_LOCK = 7_240_001

LEDGER_DDL = """
create schema if not exists ops;
create table if not exists ops.schema_migrations (
    version integer primary key,
    name text not null,
    applied_at timestamptz not null default now()
)
"""


class MigrationError(RuntimeError):
    """A migration failed; the ones before it stay applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def available_migrations(folder: Path = FOLDER) -> list[Migration]:
    """The migration files, in order; a misnamed or duplicated number is refused."""
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = NAME.match(path.name)
        if not match:
            raise ValueError(f"{path}: a migration is named NNNN_name.sql (lowercase, digits, _)")
        found.append(Migration(int(match[1]), match[2], path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{folder}: two migrations share a number: {versions}")
    return found


def migrate(conn, folder: Path = FOLDER) -> list[Migration]:
    """Applies the migrations not applied yet; returns them. `conn` must be in autocommit
    mode: each migration commits on its own, so a failure keeps the ones before it."""
    if not conn.autocommit:
        raise ValueError("migrate() needs a connection in autocommit mode")
    applied_now = []
    with conn.cursor() as cur:
        cur.execute("select pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            cur.execute(LEDGER_DDL)
            cur.execute("select version from ops.schema_migrations")
            applied = {row[0] for row in cur.fetchall()}
            for migration in available_migrations(folder):
                if migration.version in applied:
                    continue
                cur.execute("begin")
                try:
                    cur.execute(migration.path.read_text())
                    cur.execute("insert into ops.schema_migrations (version, name)"
                                " values (%s, %s)", (migration.version, migration.name))
                except psycopg2.Error as exc:
                    cur.execute("rollback")
                    raise MigrationError(
                        f"migration {migration.path.name} failed and was rolled back: "
                        f"{str(exc).strip().splitlines()[0]}") from exc
                cur.execute("commit")
                applied_now.append(migration)
        finally:
            cur.execute("select pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now
