"""Warehouse tables of scores, projections and refresh operations. All are history: a
scoring or projection run appends a new set of rows (with its run id and time); nothing is
overwritten, so a change can be explained against the set before it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import pandas as pd
from psycopg2 import sql

from refresh_assets.lib.cities import city_key
from refresh_assets.lib.database import ANALYTICS_SCHEMA, copy_frame
from refresh_assets.lib.scoring import INDICATORS

SCORES = sql.Identifier(ANALYTICS_SCHEMA, "risk_scores")
MEDIANS = sql.Identifier(ANALYTICS_SCHEMA, "statewide_growth_medians")
PROJECTION_YEARS = sql.Identifier(ANALYTICS_SCHEMA, "projection_years")
PROJECTION_SUMMARIES = sql.Identifier(ANALYTICS_SCHEMA, "projection_summaries")
CURRENT_PROJECTIONS = sql.Identifier(ANALYTICS_SCHEMA, "current_projections")
CURRENT_SCORES = sql.Identifier(ANALYTICS_SCHEMA, "current_scores")

SCORE_TABLE_COLUMNS = ("run_id", "city_key", "city", "fiscal_year", "entry_version",
                       "methodology_version", "overall_points", "overall_risk",
                       "gf_reserves_trend",
                       *(f"{i}_{p}" for i in INDICATORS for p in ("ratio", "points", "risk")))
YEAR_COLUMNS = ("run_id", "city_key", "city", "scenario", "base_year", "k", "fiscal_year",
                "revenue", "expenditures", "pension_expenditures", "fund_balance",
                "methodology_version")
SUMMARY_COLUMNS = (
    "run_id", "city_key", "city", "scenario", "base_year", "revenue_base", "expenditures_base",
    "fund_balance_base", "below_zero_at_base", "cliff_year", "reserve_breach_year", "severity",
    "gap_to_close", "gap_share_of_expenditures", "gap_share_of_revenue", "fund_balance_year_10",
    "g_city", "n_rates", "m_t0", "g", "s", "phi", "pension_base", "pension_schedule_source",
    "anchor", "sigma_revenue", "sigma_expenditures", "sigma_fund_balance",
    "band_lower_quantile", "band_upper_quantile", "methodology_version", "entry_version")
PRIOR_COLUMNS = ("base_year", "median_growth", "cities", "revenue_variance",
                 "expenditures_variance", "fund_balance_variance")



def _with_keys(frame: pd.DataFrame, run_id: str) -> pd.DataFrame:
    return frame.assign(run_id=run_id, city_key=frame["city"].map(city_key))


def append_scores(conn, run_id: str, scores: pd.DataFrame) -> None:
    """Appends a run's scores; they become current with the city's projection
    (`advance_current_scores`)."""
    with conn.cursor() as cur:
        copy_frame(cur, SCORES, _with_keys(scores, run_id), SCORE_TABLE_COLUMNS, "%.2f")


def advance_current_scores(conn, city_keys: Sequence[str]) -> None:
    """Makes each city's latest stored scoring its current one, in the caller's transaction:
    the projections step calls it with the cities it projected, so the score marts (views
    over the current scoring) and the forecast show a refreshed city together, and a run cut
    off between its scores and its projections shows none of it."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("""
            insert into {pointer} as current (city_key, city, run_id, scored_at)
            select distinct on (city_key) city_key, city, run_id, scored_at from {scores}
            where city_key = any(%s) order by city_key, scored_at desc, run_id desc
            on conflict (city_key) do update
                set city = excluded.city, run_id = excluded.run_id, scored_at = excluded.scored_at
                where current.scored_at <= excluded.scored_at
        """).format(pointer=CURRENT_SCORES, scores=SCORES), (list(city_keys),))


def append_priors(conn, run_id: str, priors: pd.DataFrame) -> None:
    """The statewide priors (projections.statewide_priors) of a run."""
    with conn.cursor() as cur:
        copy_frame(cur, MEDIANS, priors.assign(run_id=run_id), ("run_id", *PRIOR_COLUMNS))


def latest_priors(conn) -> pd.DataFrame:
    """The statewide priors by base year (index), from the latest computation."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in PRIOR_COLUMNS)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select {} from {} where run_id = ("
                            "select run_id from {} order by computed_at desc limit 1)")
                    .format(columns, MEDIANS, MEDIANS))
        priors = pd.DataFrame(cur.fetchall(), columns=list(PRIOR_COLUMNS))
    return priors.set_index("base_year").astype(float)


def append_projections(conn, run_id: str, yearly: pd.DataFrame, summary: pd.DataFrame) -> None:
    """Appends a run's rows and makes it its cities' current run, in the caller's
    transaction: readers of the pointer see the new rows with it or neither."""
    cities = sorted(set(summary["city"]))
    with conn.cursor() as cur:
        copy_frame(cur, PROJECTION_YEARS, _with_keys(yearly, run_id), YEAR_COLUMNS)
        copy_frame(cur, PROJECTION_SUMMARIES, _with_keys(summary, run_id), SUMMARY_COLUMNS)
        _point_at_run(cur, CURRENT_PROJECTIONS, "projected_at", cities, run_id)


def _point_at_run(cur, pointer: sql.Identifier, time_column: str, cities: Sequence[str],
                  run_id: str) -> None:
    """Makes `run_id` the current run of `cities` in a pointer table. now() is the
    transaction's start: the time of the rows just copied. A run that started earlier but
    commits later does not displace a newer one, as in the ranking of the history by time."""
    cur.execute(sql.SQL("""
        insert into {pointer} as current (city_key, city, run_id, {time})
        select unnest(%s::text[]), unnest(%s::text[]), %s, now()
        on conflict (city_key) do update
            set city = excluded.city, run_id = excluded.run_id, {time} = excluded.{time}
            where current.{time} <= excluded.{time}
    """).format(pointer=pointer, time=sql.Identifier(time_column)),
        ([city_key(c) for c in cities], list(cities), run_id))


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


def latest_scores(conn, city_keys: Sequence[str]) -> pd.DataFrame:
    return _latest_runs(conn, SCORES, "scored_at", city_keys, runs=1)


def latest_projection_summaries(conn, city_keys: Sequence[str]) -> pd.DataFrame:
    return _latest_runs(conn, PROJECTION_SUMMARIES, "projected_at", city_keys, runs=1)


def _cell(value, float_format: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    # Whole numbers and decimals alike: an entry version read as 12 or as 12.0 is the same.
    if isinstance(value, (int, float, Decimal, np.number)):
        return format(float(value), float_format)
    return str(value)


def _fingerprints(frame: pd.DataFrame, columns: Sequence[str], float_format: str) -> dict:
    """City -> its rows as sorted text, numbers formatted as they are stored."""
    if frame.empty:
        return {}
    text = pd.DataFrame({c: frame[c].map(lambda v: _cell(v, float_format)) for c in columns})
    rows = text.iloc[:, 0].str.cat([text[c] for c in columns[1:]], sep="|")
    return {city: tuple(sorted(group)) for city, group in rows.groupby(frame["city"].values)}


def changed_cities(new: pd.DataFrame, stored: pd.DataFrame, columns: Sequence[str],
                   float_format: str) -> set[str]:
    """Cities whose newly computed rows differ from their latest stored ones (or that have
    none stored): only those are appended, so an unchanged refresh writes no new history
    and the "what changed" report keeps comparing real changes."""
    before = _fingerprints(stored, columns, float_format)
    return {city for city, rows in _fingerprints(new, columns, float_format).items()
            if before.get(city) != rows}


def append_changed_scores(conn, run_id: str, scores: pd.DataFrame) -> set[str]:
    """Appends the scores of the cities whose scores changed; returns those cities."""
    if scores.empty:
        return set()
    stored = latest_scores(conn, sorted(set(scores["city"].map(city_key))))
    compared = [c for c in SCORE_TABLE_COLUMNS if c not in ("run_id", "city_key")]
    changed = changed_cities(scores, stored, compared, ".2f")
    if changed:
        append_scores(conn, run_id, scores[scores["city"].isin(changed)])
    return changed


def append_changed_projections(conn, run_id: str, yearly: pd.DataFrame,
                               summary: pd.DataFrame) -> set[str]:
    """Appends the projections of the cities whose projection changed; returns them."""
    if summary.empty:
        return set()
    keys = sorted(set(summary["city"].map(city_key)))
    compared_summary = [c for c in SUMMARY_COLUMNS if c not in ("run_id", "city_key")]
    compared_years = [c for c in YEAR_COLUMNS if c not in ("run_id", "city_key")]
    changed = (changed_cities(summary, latest_projection_summaries(conn, keys),
                              compared_summary, ".10g")
               | changed_cities(yearly, latest_projection_years(conn, keys), compared_years, ".10g"))
    if changed:
        append_projections(conn, run_id, yearly[yearly["city"].isin(changed)],
                           summary[summary["city"].isin(changed)])
    return changed
