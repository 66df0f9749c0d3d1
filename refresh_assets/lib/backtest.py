"""Backtests of the projections (METHODOLOGY.md §3): replay from a past base year against
the actuals that followed, beside the naive persistence forecast (F = the last actual)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from refresh_assets.lib.projections import build_history, projections_for

MEASURES = {"revenue": "revenue", "expenditures": "expenditures", "fund_balance": "fund_balance"}


def replay(entries: pd.DataFrame, calpers: pd.DataFrame, base_year: int) -> pd.DataFrame:
    """Forecasts made with data up to `base_year` beside the actuals, one row per city,
    measure and horizon (every city projectable from that base year with the actual)."""
    yearly, _, _ = projections_for(entries, calpers, up_to_year=base_year)
    yearly = yearly[yearly["base_year"] == base_year]
    actuals = build_history(entries)  # the latest report of each year, restatements included
    known_at_base = build_history(entries, up_to_year=base_year)
    last = known_at_base[known_at_base["year"] == base_year].set_index("city")
    rows = []
    for measure in MEASURES:
        wide = yearly.pivot_table(index=["city", "fiscal_year", "k"], columns="scenario",
                                  values=measure).reset_index()
        paired = wide.merge(actuals[["city", "year", measure]].rename(
            columns={"year": "fiscal_year", measure: "actual"}), on=["city", "fiscal_year"])
        paired["persistence"] = paired["city"].map(last[measure])
        paired = paired.dropna(subset=["actual", "base", "persistence"])
        paired["measure"] = measure
        rows.append(paired)
    return pd.concat(rows, ignore_index=True)


def metrics(pairs: pd.DataFrame) -> pd.DataFrame:
    """WAPE, bias and band coverage per measure and horizon, and persistence's WAPE."""
    p = pairs.assign(
        abs_error=(pairs["base"] - pairs["actual"]).abs(),
        error=pairs["base"] - pairs["actual"],
        abs_actual=pairs["actual"].abs(),
        persistence_abs_error=(pairs["persistence"] - pairs["actual"]).abs(),
        in_band=pairs["actual"].between(
            pairs[["optimistic", "pessimistic"]].min(axis=1),
            pairs[["optimistic", "pessimistic"]].max(axis=1)),
        false_cliff=(pairs["base"] < 0) & (pairs["actual"] >= 0),
    )
    grouped = p.groupby(["measure", "k", "fiscal_year"])
    out = pd.DataFrame({
        "cities": grouped.size(),
        "wape": grouped["abs_error"].sum() / grouped["abs_actual"].sum(),
        "bias": grouped["error"].sum() / grouped["abs_actual"].sum(),
        "band_coverage": grouped["in_band"].mean(),
        "persistence_wape": grouped["persistence_abs_error"].sum() / grouped["abs_actual"].sum(),
        "false_cliffs": grouped["false_cliff"].sum(),
    }).reset_index()
    out["beats_persistence"] = out["wape"] < out["persistence_wape"]
    out.loc[out["measure"] != "fund_balance", "false_cliffs"] = np.nan
    return out
