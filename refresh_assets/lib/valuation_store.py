"""The warehouse table of CalPERS valuation files: `raw.calpers_valuation_entries`.

Rows are only ever inserted (`valuation_version` orders them). A file whose canonical
content equals its latest version adds nothing, so an unchanged file ingested again, or a
file only touched, makes no new version. Writers of the same city take turns (the same
per-city transaction lock as `raw.fiscal_entries`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

import pandas as pd
from psycopg2 import sql

from refresh_assets.lib.city_locks import lock_cities_for_transaction
from refresh_assets.lib.database import RAW_SCHEMA, append_changed_versions

VALUATIONS = sql.Identifier(RAW_SCHEMA, "calpers_valuation_entries")
STORED_COLUMNS = ("city_key", "city", "plan", "plan_key", "valuation_date", "funded_ratio",
                  "unfunded_accrued_liability", "employer_contributions", "document_title",
                  "document_url", "document_pages", "entered_by", "entered_at", "notes",
                  "source_path")
ADDED_COLUMNS = ("valuation_version", "city_key", "plan_key", "valuation_date", "source_path")
JSON_COLUMNS = ("employer_contributions", "document_pages")


def _canonical(value):
    """A value as JSON that does not depend on how it was read: numbers as plain decimals
    without trailing zeros, dates and times in ISO 8601, mappings with sorted keys."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
        number = Decimal(str(value)).normalize()
        return format(number, "f") if number != 0 else "0"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return str(value)


def canonical_checksum(row: dict) -> str:
    """SHA-256 of a row's stored values (every column but the bookkeeping), canonical."""
    text = json.dumps({c: _canonical(row.get(c)) for c in STORED_COLUMNS}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _json_numbers(mapping: dict | None) -> str | None:
    """A mapping of numbers as a JSON object whose values are JSON numbers, exact (the
    canonical decimal text, not a float's)."""
    if mapping is None or (isinstance(mapping, float) and mapping != mapping):
        return None
    items = sorted((str(key), _canonical(value)) for key, value in mapping.items())
    return "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in items) + "}"


def append_valuation_versions(conn, run_id: str, valuations: pd.DataFrame) -> pd.DataFrame:
    """Inserts the files whose checksum differs from their latest version, in the caller's
    transaction; returns the rows inserted (version, city, plan, date, file)."""
    if valuations.empty:
        return pd.DataFrame(columns=list(ADDED_COLUMNS))
    frame = valuations.copy()
    frame["source_checksum"] = [canonical_checksum(row) for row in frame.to_dict("records")]
    frame["run_id"] = run_id
    for column in JSON_COLUMNS:
        frame[column] = frame[column].map(_json_numbers)
    columns = (*STORED_COLUMNS, "source_checksum", "run_id")
    lock_cities_for_transaction(conn, frame["city_key"])
    with conn.cursor() as cur:
        inserted = append_changed_versions(
            cur, VALUATIONS, frame, columns, generated=("valuation_version", "ingested_at"),
            order_by=("city_key", "valuation_date", "plan_key"), returning=ADDED_COLUMNS)
    return pd.DataFrame(inserted, columns=list(ADDED_COLUMNS))


def load_current_valuations(conn, city_keys: Sequence[str]) -> pd.DataFrame:
    """The latest version of every valuation file of these cities: city, plan, valuation
    date, contributions (fiscal year -> USD, as stored) and file."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("""
            select distinct on (source_path)
                valuation_version, city_key, city, plan, plan_key, valuation_date,
                funded_ratio, unfunded_accrued_liability, employer_contributions, source_path
            from {} where city_key = any(%s)
            order by source_path, valuation_version desc
        """).format(VALUATIONS), (list(city_keys),))
        rows = cur.fetchall()
        names = [d.name for d in cur.description]
    return pd.DataFrame(rows, columns=names)

