"""Backtests of the projections (METHODOLOGY.md §3): replay from a past base year against
the actuals that followed, beside the naive persistence forecast (F = the last actual)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from refresh_assets.lib.projection_bands import CALIBRATED, BandParameters
from refresh_assets.lib.projections import (
    HORIZON,
    METHODOLOGY_VERSION,
    build_history,
    projections_for,
)

MEASURES = ("revenue", "expenditures", "fund_balance")
REPLAY_BASE_YEARS = (2018, 2019)  # t0=2018 -> FY2019, FY2020; t0=2019 -> FY2020
COVERAGE_TARGET = (0.70, 0.90)
WIDTH_GROWTH_LIMIT = 1.2  # the year-k half-width at most 1.2 √k times the year-1 one


def replay(entries: pd.DataFrame, calpers: pd.DataFrame, base_year: int,
           methodology: str = METHODOLOGY_VERSION,
           parameters: BandParameters = CALIBRATED) -> pd.DataFrame:
    """Forecasts made with data up to `base_year` beside the actuals, one row per city,
    measure and horizon (every city projectable from that base year with the actual)."""
    yearly, _, _ = projections_for(entries, calpers, up_to_year=base_year,
                                   methodology=methodology, parameters=parameters)
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
    return pd.concat(rows, ignore_index=True).assign(base_year=base_year,
                                                      methodology_version=methodology)


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


def replay_metrics(entries: pd.DataFrame, calpers: pd.DataFrame,
                   methodology: str = METHODOLOGY_VERSION,
                   parameters: BandParameters = CALIBRATED,
                   base_years=REPLAY_BASE_YEARS) -> pd.DataFrame:
    """metrics() of every replay, one row per base year, measure and target year."""
    return pd.concat([metrics(replay(entries, calpers, t0, methodology, parameters))
                      .assign(base_year=t0) for t0 in base_years], ignore_index=True)


def fund_balance_band_widths(yearly: pd.DataFrame, summary: pd.DataFrame) -> pd.Series:
    """Per horizon k: the median across cities of the fund-balance band's half-width,
    (high - low) / 2, as a share of base-year expenditures."""
    wide = yearly.pivot_table(index=["city", "k"], columns="scenario", values="fund_balance")
    half = (wide[["optimistic", "pessimistic"]].max(axis=1)
            - wide[["optimistic", "pessimistic"]].min(axis=1)) / 2
    expenditures = summary.drop_duplicates("city").set_index("city")["expenditures_base"]
    share = half / expenditures.reindex(half.index.get_level_values("city")).to_numpy()
    return share.groupby(level="k").median()


@dataclass(frozen=True)
class Target:
    name: str
    met: bool
    detail: str


def targets(results: pd.DataFrame, reference: pd.DataFrame, widths: pd.Series) -> list[Target]:
    """Issue 12's targets for a method's replay results (replay_metrics), against the
    reference method's (v1.1) and with its fund-balance band widths by horizon."""
    low, high = COVERAGE_TARGET
    coverage = results["band_coverage"]
    fund = results[results["measure"] == "fund_balance"].set_index(["base_year", "fiscal_year"])
    fund_reference = reference[reference["measure"] == "fund_balance"].set_index(
        ["base_year", "fiscal_year"])
    k = int(HORIZON[-1])
    growth, limit = widths[k] / widths[1], WIDTH_GROWTH_LIMIT * np.sqrt(k)
    return [
        Target(f"band coverage {low:.0%}–{high:.0%} in all {len(results)} cells",
               bool(coverage.between(low, high).all()),
               f"{coverage.min():.1%}–{coverage.max():.1%}"),
        Target("fund-balance WAPE no worse than persistence in every replay",
               bool((fund["wape"] <= fund["persistence_wape"]).all()),
               " / ".join(f"{w:.1%} vs {p:.1%}"
                          for w, p in zip(fund["wape"], fund["persistence_wape"], strict=True))),
        Target("false cliffs no more than v1.1's",
               bool((fund["false_cliffs"] <= fund_reference["false_cliffs"]).all()),
               " / ".join(f"{int(a)} vs {int(b)}" for a, b in
                          zip(fund["false_cliffs"], fund_reference["false_cliffs"], strict=True))),
        Target(f"year-{k} fund-balance half-width at most {WIDTH_GROWTH_LIMIT} √{k} × year 1",
               bool(growth <= limit),
               f"median {widths[1]:.1%} → {widths[k]:.1%} of expenditures, "
               f"×{growth:.2f} (limit ×{limit:.2f})"),
    ]
