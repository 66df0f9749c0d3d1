"""Warehouse tables of scores, projections and refresh operations. All are history: a
scoring or projection run appends a new set of rows (with its run id and time); nothing is
overwritten, so a change can be explained against the set before it."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from psycopg2 import sql

from refresh_assets.lib.cities import city_key
from refresh_assets.lib.database import ANALYTICS_SCHEMA, OPS_SCHEMA, copy_frame
from refresh_assets.lib.scoring import INDICATORS

SCORES = sql.Identifier(ANALYTICS_SCHEMA, "risk_scores")
MEDIANS = sql.Identifier(ANALYTICS_SCHEMA, "statewide_growth_medians")
PROJECTION_YEARS = sql.Identifier(ANALYTICS_SCHEMA, "projection_years")
PROJECTION_SUMMARIES = sql.Identifier(ANALYTICS_SCHEMA, "projection_summaries")
REFRESH_OPERATIONS = sql.Identifier(OPS_SCHEMA, "refresh_operations")

SCORE_TABLE_COLUMNS = ("run_id", "city_key", "city", "fiscal_year", "entry_version",
                       "methodology_version", "overall_points", "overall_risk",
                       "gf_reserves_trend",
                       *(f"{i}_{p}" for i in INDICATORS for p in ("ratio", "points", "risk")))
YEAR_COLUMNS = ("run_id", "city_key", "city", "scenario", "base_year", "k", "fiscal_year",
                "revenue", "expenditures", "pension_expenditures", "fund_balance")
SUMMARY_COLUMNS = (
    "run_id", "city_key", "city", "scenario", "base_year", "revenue_base", "expenditures_base",
    "fund_balance_base", "below_zero_at_base", "cliff_year", "reserve_breach_year", "severity",
    "gap_to_close", "gap_share_of_expenditures", "gap_share_of_revenue", "fund_balance_year_10",
    "g_city", "n_rates", "m_t0", "g", "s", "phi", "pension_base", "pension_schedule_source",
    "anchor", "methodology_version", "entry_version")
OPERATION_COLUMNS = ("run_id", "city_key", "city", "trigger", "entry_version",
                     "previous_overall_points", "overall_points", "previous_overall_risk",
                     "overall_risk", "previous_cliff_year", "cliff_year", "status",
                     "duration_seconds", "error", "report_path")



def _with_keys(frame: pd.DataFrame, run_id: str) -> pd.DataFrame:
    return frame.assign(run_id=run_id, city_key=frame["city"].map(city_key))


def append_scores(conn, run_id: str, scores: pd.DataFrame) -> None:
    with conn.cursor() as cur:
        copy_frame(cur, SCORES, _with_keys(scores, run_id), SCORE_TABLE_COLUMNS, "%.2f")


def append_medians(conn, run_id: str, medians: pd.DataFrame) -> None:
    with conn.cursor() as cur:
        copy_frame(cur, MEDIANS, medians.assign(run_id=run_id),
                   ("run_id", "base_year", "median_growth", "cities"))


def latest_medians(conn) -> pd.Series:
    """m(t0) per base year, from the latest computation."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select base_year, median_growth from {} where run_id = ("
                            "select run_id from {} order by computed_at desc limit 1)")
                    .format(MEDIANS, MEDIANS))
        return pd.Series(dict(cur.fetchall()), dtype=float)


def append_projections(conn, run_id: str, yearly: pd.DataFrame, summary: pd.DataFrame) -> None:
    with conn.cursor() as cur:
        copy_frame(cur, PROJECTION_YEARS, _with_keys(yearly, run_id), YEAR_COLUMNS)
        copy_frame(cur, PROJECTION_SUMMARIES, _with_keys(summary, run_id), SUMMARY_COLUMNS)


def _latest_runs(conn, table: sql.Identifier, time_column: str, city_keys: Sequence[str],
                 runs: int) -> pd.DataFrame:
    """Rows of each city's latest `runs` runs, with their rank (1 = latest)."""
    query = sql.SQL("""
        with runs as (
            select city_key, run_id, max({time}) as at from {table}
            where city_key = any(%s) group by city_key, run_id
        ), ranked as (
            select city_key, run_id,
                   row_number() over (partition by city_key order by at desc) as run_rank
            from runs
        )
        select ranked.run_rank, t.* from {table} as t
        join ranked using (city_key, run_id)
        where ranked.run_rank <= %s
    """).format(time=sql.Identifier(time_column), table=table)
    with conn.cursor() as cur:
        cur.execute(query, (list(city_keys), runs))
        columns = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def latest_and_previous_scores(conn, city_keys: Sequence[str]) -> pd.DataFrame:
    return _latest_runs(conn, SCORES, "scored_at", city_keys, runs=2)


def latest_and_previous_projections(conn, city_keys: Sequence[str]) -> pd.DataFrame:
    return _latest_runs(conn, PROJECTION_SUMMARIES, "projected_at", city_keys, runs=2)


def latest_projection_years(conn, city_keys: Sequence[str]) -> pd.DataFrame:
    return _latest_runs(conn, PROJECTION_YEARS, "projected_at", city_keys, runs=1)


def record_refresh_operations(conn, operations: pd.DataFrame) -> None:
    whole_numbers = {c: "Int64" for c in ("entry_version", "previous_cliff_year", "cliff_year")}
    frame = operations.reindex(columns=OPERATION_COLUMNS).astype(whole_numbers)
    with conn.cursor() as cur:
        copy_frame(cur, REFRESH_OPERATIONS, frame, OPERATION_COLUMNS)
