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

import hashlib
import json
import math
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pandas as pd
from psycopg2 import sql

from refresh_assets.lib.cities import city_key, known_cities
from refresh_assets.lib.city_locks import lock_cities_for_transaction
from refresh_assets.lib.database import (
    ANALYTICS_SCHEMA,
    OPS_SCHEMA,
    RAW_SCHEMA,
    append_changed_versions,
    copy_frame,
)
from refresh_assets.lib.entries import Problem
from refresh_assets.lib.fiscal_inputs import FIELD_NAMES, FIELDS
from refresh_assets.lib.validation import ISSUE_COLUMNS

ENTRIES = sql.Identifier(RAW_SCHEMA, "fiscal_entries")
VALIDATED = sql.Identifier(ANALYTICS_SCHEMA, "validated_fiscal_data")
RESULTS = sql.Identifier(OPS_SCHEMA, "validation_results")
CITY_VALIDATIONS = sql.Identifier(OPS_SCHEMA, "city_validations")

SOURCE_COLUMNS = ("source_kind", "source_path", "source_checksum", "document_title",
                  "document_url", "document_pages", "entered_by", "entered_at", "notes")
ENTRY_COLUMNS = ("city_key", *FIELD_NAMES, *SOURCE_COLUMNS)
ADDED_COLUMNS = ("entry_version", "city", "fiscal_year", "source_kind", "source_path")


NUMBER_COLUMNS = frozenset(f.name for f in FIELDS if f.sql_type in ("integer", "numeric"))
# What a version is: every stored value but the bookkeeping (version number, load time).
CHECKSUM_COLUMNS = tuple(sorted(c for c in ENTRY_COLUMNS if c != "source_checksum"))
MISSING = "\\N"


def _canonical_text(name: str, value) -> str:
    """One value as text that does not depend on how it was read: numbers as plain decimals
    without trailing zeros (15000000, 0.5), JSON with sorted keys, missing as \\N."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if name in NUMBER_COLUMNS:
        number = Decimal(str(value)).normalize()
        return format(number, "f") if number != 0 else "0"
    if name == "document_pages":
        return json.dumps(json.loads(value) if isinstance(value, str) else value,
                          sort_keys=True, separators=(",", ":"))
    return str(value)


def canonical_checksums(frame: pd.DataFrame) -> pd.Series:
    """SHA-256 of each row's canonical serialisation: `name=value` for every stored column
    in name order, joined by newlines (see _canonical_text). Stable across pandas versions,
    unlike pandas' own row hash, so an unchanged re-import never makes a new version."""
    texts = [frame[name].map(lambda value, name=name: f"{name}={_canonical_text(name, value)}")
             for name in CHECKSUM_COLUMNS]
    rows = texts[0].str.cat(texts[1:], sep="\n") if len(frame) else pd.Series(dtype=str)
    return rows.map(lambda text: hashlib.sha256(text.encode()).hexdigest())


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
    frame["source_checksum"] = canonical_checksums(frame)
    # Two writers of the same city (hence of the same sources) take turns, so they cannot
    # both add the same version; writers of other cities do not wait.
    lock_cities_for_transaction(conn, frame["city_key"])
    with conn.cursor() as cur:
        inserted = append_changed_versions(
            cur, ENTRIES, frame, ENTRY_COLUMNS, generated=("entry_version", "loaded_at"),
            order_by=("city", "fiscal_year"), returning=ADDED_COLUMNS)
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


def form_problems_as_issues(problems: Sequence[Problem]) -> pd.DataFrame:
    """Entry-file problems (a file that did not parse) as issue rows: no entry version; the
    city and fiscal year are read from the file's place, `<city key>/<year>.yaml`."""
    rows = []
    for problem in problems:
        folder, _, name = problem.file.partition("/")
        year = Path(name).stem
        rows.append({"city_key": folder, "city": known_cities().get(folder, folder),
                     "fiscal_year": int(year) if year.isdigit() else None,
                     "entry_version": None, "source_path": problem.file, "field": problem.field,
                     "rule": problem.rule, "severity": problem.severity,
                     "value": problem.value, "message": problem.message})
    return pd.DataFrame(rows, columns=["city_key", *ISSUE_COLUMNS])


def record_issues(conn, run_id: str, issues: pd.DataFrame) -> None:
    """Stores issues (value rules' or entry files' form problems) found by this run."""
    if issues.empty:
        return
    frame = issues.assign(run_id=run_id)
    if "city_key" not in frame:
        frame["city_key"] = frame["city"].map(city_key)
    for column in ("fiscal_year", "entry_version"):  # missing for form problems
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    with conn.cursor() as cur:
        copy_frame(cur, RESULTS, frame, ("run_id", "city_key", *ISSUE_COLUMNS))


def record_city_validations(conn, run_id: str, city_keys: Sequence[str]) -> None:
    """One row per city validated by this run, clean or not, counting the issues this run
    stored for it: the current issues of a city are those of its latest row."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("""
            insert into {validations} (run_id, city_key, errors, warnings, infos)
            select %(run)s, cities.city_key,
                   count(*) filter (where issue.severity = 'error'),
                   count(*) filter (where issue.severity = 'warning'),
                   count(*) filter (where issue.severity = 'info')
            from unnest(%(cities)s::text[]) as cities (city_key)
            left join {results} as issue
                on issue.run_id = %(run)s and issue.city_key = cities.city_key
            group by cities.city_key
        """).format(validations=CITY_VALIDATIONS, results=RESULTS),
            {"run": run_id, "cities": sorted(set(city_keys))})


def load_validated(conn, city_keys: Sequence[str] | None = None) -> pd.DataFrame:
    """The validated figures (one row per city-year) with the version and source each came
    from, of these cities or of all."""
    names = (*FIELD_NAMES, "entry_version", "source_kind", "source_path")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in names)
    query = sql.SQL("select {} from {}").format(columns, VALIDATED)
    with conn.cursor() as cur:
        if city_keys is None:
            cur.execute(query + sql.SQL(" order by city, fiscal_year"))
        else:
            cur.execute(query + sql.SQL(" where city_key = any(%s) order by city, fiscal_year"),
                        (list(city_keys),))
        return pd.DataFrame(cur.fetchall(), columns=list(names))
