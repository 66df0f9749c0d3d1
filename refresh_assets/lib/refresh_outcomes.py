"""What happened to each city in each refresh: `ops.refresh_operations`, one row per run and
city, success or failure (never both), and `ops.notifications`, one row per email.

A city that fails at some stage (its entry is malformed or refused by validation, its
scoring, projection or report raises) is recorded as failed by that stage; the later
stages of the same run read the failures and leave the city alone, so it keeps its last
valid scores, projections and report while every other city is refreshed. The first
outcome recorded for a run and city stands: a later write for the same pair is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from psycopg2 import sql
from psycopg2.extras import execute_values

from refresh_assets.lib.database import OPS_SCHEMA

REFRESH_OPERATIONS = sql.Identifier(OPS_SCHEMA, "refresh_operations")
NOTIFICATIONS = sql.Identifier(OPS_SCHEMA, "notifications")

SUCCESS, FAILURE = "success", "failure"
# The stages of a city's refresh, in order; a failure names the one it happened in.
STAGES = ("ingestion", "validation", "scoring", "projection", "report", "run")
OPERATION_COLUMNS = ("run_id", "city_key", "city", "trigger", "status", "stage", "error",
                     "entry_version", "previous_overall_points", "overall_points",
                     "previous_overall_risk", "overall_risk", "previous_cliff_year", "cliff_year",
                     "duration_seconds", "report_path", "report_checksum")


def _insert_first_outcome(conn, rows: pd.DataFrame) -> int:
    """Inserts outcomes; a (run, city) that already has one keeps it. Returns rows added."""
    if rows.empty:
        return 0
    frame = rows.reindex(columns=OPERATION_COLUMNS).astype(object)
    values = [tuple(None if pd.isna(v) else v for v in row)
              for row in frame.itertuples(index=False)]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in OPERATION_COLUMNS)
    query = sql.SQL("insert into {} ({}) values %s on conflict (run_id, city_key) do nothing"
                    ).format(REFRESH_OPERATIONS, columns)
    with conn.cursor() as cur:
        execute_values(cur, query.as_string(conn), values, page_size=1000)
        return cur.rowcount


def record_failures(conn, run_id: str, trigger: str, stage: str, failures: pd.DataFrame) -> int:
    """Records cities that failed at `stage`; `failures` has city_key, city and error."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
    return _insert_first_outcome(conn, failures.assign(
        run_id=run_id, trigger=trigger, status=FAILURE, stage=stage))


def record_successes(conn, run_id: str, trigger: str, operations: pd.DataFrame) -> int:
    """Records refreshed cities with their before/after figures and report."""
    return _insert_first_outcome(conn, operations.assign(
        run_id=run_id, trigger=trigger, status=SUCCESS))


def failed_cities(conn, run_id: str) -> dict[str, str]:
    """City key -> stage, for the cities this run has already recorded as failed."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select city_key, stage from {} where run_id = %s and status = %s")
                    .format(REFRESH_OPERATIONS), (run_id, FAILURE))
        return dict(cur.fetchall())


def run_outcomes(conn, run_id: str) -> pd.DataFrame:
    """Every city's outcome in this run (for summaries)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select city_key, city, status, stage, error, overall_risk,"
                            " cliff_year, report_path from {} where run_id = %s order by city_key")
                    .format(REFRESH_OPERATIONS), (run_id,))
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def latest_report_checksums(conn, city_keys: Sequence[str]) -> dict[str, tuple[str, str]]:
    """City key -> (checksum of the inputs, path) of the city's latest report written."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("""
            select distinct on (city_key) city_key, report_checksum, report_path from {}
            where city_key = any(%s) and status = %s and report_checksum is not null
            order by city_key, recorded_at desc
        """).format(REFRESH_OPERATIONS), (list(city_keys), SUCCESS))
        return {key: (checksum, path) for key, checksum, path in cur.fetchall()}


def record_notification(conn, run_id: str, channel: str, subject: str,
                        recipients: Sequence[str], error: str | None) -> None:
    """One email sent (error None) or attempted and failed (with the reason)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("insert into {} (run_id, channel, subject, recipients, status, error)"
                            " values (%s, %s, %s, %s, %s, %s)").format(NOTIFICATIONS),
                    (run_id, channel, subject, list(recipients),
                     "failed" if error else "sent", error))
