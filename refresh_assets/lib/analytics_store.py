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

_INDICATOR_DDL = ",\n    ".join(
    f"{i}_ratio numeric(16, 2), {i}_points numeric(6, 2) not null, {i}_risk text not null"
    for i in INDICATORS)
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

DDL = f"""
create table if not exists {ANALYTICS_SCHEMA}.risk_scores (
    run_id text not null,
    scored_at timestamptz not null default now(),
    city_key text not null,
    city text not null,
    fiscal_year integer not null,
    entry_version bigint,
    methodology_version text not null,
    overall_points numeric(6, 2) not null,
    overall_risk text not null,
    gf_reserves_trend numeric(16, 2),
    {_INDICATOR_DDL}
);
create index if not exists risk_scores_city on {ANALYTICS_SCHEMA}.risk_scores (city_key, scored_at);

create table if not exists {ANALYTICS_SCHEMA}.statewide_growth_medians (
    run_id text not null,
    computed_at timestamptz not null default now(),
    base_year integer not null,
    median_growth double precision,
    cities integer not null
);

create table if not exists {ANALYTICS_SCHEMA}.projection_years (
    run_id text not null,
    projected_at timestamptz not null default now(),
    city_key text not null,
    city text not null,
    scenario text not null,
    base_year integer not null,
    k integer not null,
    fiscal_year integer not null,
    revenue double precision not null,
    expenditures double precision not null,
    pension_expenditures double precision not null,
    fund_balance double precision not null
);
create index if not exists projection_years_city
    on {ANALYTICS_SCHEMA}.projection_years (city_key, projected_at);

create table if not exists {ANALYTICS_SCHEMA}.projection_summaries (
    run_id text not null,
    projected_at timestamptz not null default now(),
    city_key text not null,
    city text not null,
    scenario text not null,
    base_year integer not null,
    revenue_base double precision not null,
    expenditures_base double precision not null,
    fund_balance_base double precision not null,
    below_zero_at_base boolean not null,
    cliff_year integer,
    reserve_breach_year integer,
    severity text not null,
    gap_to_close double precision not null,
    gap_share_of_expenditures double precision,
    gap_share_of_revenue double precision,
    fund_balance_year_10 double precision not null,
    g_city double precision,
    n_rates integer not null,
    m_t0 double precision,
    g double precision,
    s double precision not null,
    phi double precision not null,
    pension_base double precision not null,
    pension_schedule_source text not null,
    anchor double precision not null,
    methodology_version text not null,
    entry_version bigint
);
create index if not exists projection_summaries_city
    on {ANALYTICS_SCHEMA}.projection_summaries (city_key, projected_at);

create table if not exists {OPS_SCHEMA}.refresh_operations (
    run_id text not null,
    recorded_at timestamptz not null default now(),
    city_key text not null,
    city text,
    trigger text not null,
    entry_version bigint,
    previous_overall_points numeric(6, 2),
    overall_points numeric(6, 2),
    previous_overall_risk text,
    overall_risk text,
    previous_cliff_year integer,
    cliff_year integer,
    status text not null check (status in ('success', 'failure')),
    duration_seconds double precision,
    error text,
    report_path text
);
"""


def ensure_tables(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(DDL)


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
