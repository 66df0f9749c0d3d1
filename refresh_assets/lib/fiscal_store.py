"""The warehouse tables of fiscal entries: append-only raw versions, the validated view
downstream reads, and the validation results.

- `raw.fiscal_entries`: every version of every entry file and every bulk-imported row.
  Rows are only ever inserted; `entry_version` (a sequence) orders them. A submission
  whose checksum equals the latest version from the same source adds nothing.
- `analytics.validated_fiscal_data`: per city and fiscal year, the newest version that
  passed validation (rewritten per city, in one transaction).
- `ops.validation_results`: every issue found, per validation run.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from psycopg2 import sql

from refresh_assets.lib.cities import city_key
from refresh_assets.lib.database import ANALYTICS_SCHEMA, OPS_SCHEMA, RAW_SCHEMA, copy_frame
from refresh_assets.lib.fiscal_inputs import FIELD_NAMES, FIELDS
from refresh_assets.lib.validation import ISSUE_COLUMNS

ENTRIES = sql.Identifier(RAW_SCHEMA, "fiscal_entries")
VALIDATED = sql.Identifier(ANALYTICS_SCHEMA, "validated_fiscal_data")
RESULTS = sql.Identifier(OPS_SCHEMA, "validation_results")

SOURCE_COLUMNS = ("source_kind", "source_path", "source_checksum", "document_title",
                  "document_url", "document_pages", "entered_by", "entered_at", "notes")
ENTRY_COLUMNS = ("city_key", *FIELD_NAMES, *SOURCE_COLUMNS)
ADDED_COLUMNS = ("entry_version", "city", "fiscal_year", "source_kind", "source_path")
_FIGURE_DDL = ", ".join(f"{f.name} {f.sql_type}" for f in FIELDS if f.name != "city")

DDL = f"""
create table if not exists {RAW_SCHEMA}.fiscal_entries (
    entry_version bigint generated always as identity primary key,
    city_key text not null,
    city text not null,
    {_FIGURE_DDL},
    source_kind text not null check (source_kind in ('entry_file', 'bulk_import')),
    source_path text not null,
    source_checksum text not null,
    document_title text,
    document_url text,
    document_pages jsonb,
    entered_by text,
    entered_at timestamptz,
    notes text,
    loaded_at timestamptz not null default now()
);
create index if not exists fiscal_entries_city_key on {RAW_SCHEMA}.fiscal_entries (city_key);
create index if not exists fiscal_entries_source_path
    on {RAW_SCHEMA}.fiscal_entries (source_path, entry_version desc);

create table if not exists {ANALYTICS_SCHEMA}.validated_fiscal_data (
    city_key text not null,
    city text not null,
    {_FIGURE_DDL},
    entry_version bigint not null,
    source_kind text not null,
    source_path text not null,
    validated_at timestamptz not null default now(),
    primary key (city, fiscal_year)
);

create table if not exists {OPS_SCHEMA}.validation_results (
    run_id text not null,
    validated_at timestamptz not null default now(),
    city_key text not null,
    city text not null,
    fiscal_year integer not null,
    entry_version bigint not null,
    source_path text not null,
    field text not null,
    rule text not null,
    severity text not null check (severity in ('error', 'warning', 'info')),
    value text,
    message text not null
);
create index if not exists validation_results_city on {OPS_SCHEMA}.validation_results (city_key);
"""


def ensure_tables(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(DDL)


def append_entry_versions(conn, versions: pd.DataFrame) -> pd.DataFrame:
    """Inserts the rows whose checksum differs from their source's latest version.

    Returns the inserted rows' version, city, fiscal year and source. Runs in
    the caller's transaction: on error nothing is inserted.
    """
    if versions.empty:
        return pd.DataFrame(columns=list(ADDED_COLUMNS))
    frame = versions.assign(city_key=versions["city"].map(city_key))
    for column in ENTRY_COLUMNS:
        if column not in frame:
            frame[column] = None
    for field in FIELDS:
        if field.sql_type == "integer":  # a column with gaps would otherwise print 2019.0
            frame[field.name] = pd.to_numeric(frame[field.name]).astype("Int64")
    with conn.cursor() as cur:
        cur.execute("drop table if exists incoming")
        cur.execute(sql.SQL("create temporary table incoming (like {} including defaults)"
                            " on commit drop").format(ENTRIES))
        cur.execute("alter table incoming drop column entry_version, drop column loaded_at")
        copy_frame(cur, sql.Identifier("incoming"), frame, ENTRY_COLUMNS)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in ENTRY_COLUMNS)
        # Serialise writers per source, so two runs cannot both add the same version.
        cur.execute(sql.SQL("lock table {} in share row exclusive mode").format(ENTRIES))
        cur.execute(
            sql.SQL("""
                insert into {entries} ({columns})
                select {columns} from incoming as new
                where new.source_checksum is distinct from (
                    select latest.source_checksum from {entries} as latest
                    where latest.source_path = new.source_path
                    order by latest.entry_version desc limit 1)
                order by new.city, new.fiscal_year
                returning entry_version, city, fiscal_year, source_kind, source_path
            """).format(entries=ENTRIES, columns=columns)
        )
        inserted = cur.fetchall()
    return pd.DataFrame(inserted, columns=list(ADDED_COLUMNS))


def load_entry_versions(conn, city_keys: Sequence[str]) -> pd.DataFrame:
    """Every stored version for these cities, values exact (Decimal)."""
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("select entry_version, {} from {} where city_key = any(%s)"
                    " order by entry_version").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in ENTRY_COLUMNS), ENTRIES),
            (list(city_keys),),
        )
        rows = cur.fetchall()
        names = [d.name for d in cur.description]
    return pd.DataFrame(rows, columns=names)


def replace_validated(conn, city_keys: Sequence[str], validated: pd.DataFrame) -> int:
    """Rewrites these cities' validated rows (in the caller's transaction)."""
    columns = ("city_key", *FIELD_NAMES, "entry_version", "source_kind", "source_path")
    with conn.cursor() as cur:
        cur.execute(sql.SQL("delete from {} where city_key = any(%s)").format(VALIDATED),
                    (list(city_keys),))
        if not validated.empty:
            copy_frame(cur, VALIDATED, validated, columns)
    return len(validated)


def record_validation_results(conn, run_id: str, issues: pd.DataFrame) -> None:
    if issues.empty:
        return
    frame = issues.assign(run_id=run_id, city_key=issues["city"].map(city_key))
    with conn.cursor() as cur:
        copy_frame(cur, RESULTS, frame, ("run_id", "city_key", *ISSUE_COLUMNS))


def load_validated(conn, city_keys: Sequence[str] | None = None) -> pd.DataFrame:
    """The validated figures (one row per city-year), of these cities or of all."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in (*FIELD_NAMES, "entry_version"))
    query = sql.SQL("select {} from {}").format(columns, VALIDATED)
    with conn.cursor() as cur:
        if city_keys is None:
            cur.execute(query + sql.SQL(" order by city, fiscal_year"))
        else:
            cur.execute(query + sql.SQL(" where city_key = any(%s) order by city, fiscal_year"),
                        (list(city_keys),))
        return pd.DataFrame(cur.fetchall(), columns=[*FIELD_NAMES, "entry_version"])
