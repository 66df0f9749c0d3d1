"""Fiscal-health scores: the California State Auditor's ten indicators, reproduced exactly.

The rules are METHODOLOGY.md §1 (see docs/METHODOLOGY.md). Everything is vectorised over a
frame of city-years with the data dictionary's columns; no row is looked at on its own.
Conventions that matter for an exact match:
- ROUND is half away from zero on the decimal value (Excel's ROUND): 4.165 -> 4.17 although
  the binary float is 4.16499...; every ratio is ROUNDed before it is scored, and points too.
- Linear segments use two-decimal slopes (8.33, 27.78, 39.47).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from refresh_assets.lib.cities import city_key
from refresh_assets.lib.isolation import compute_isolated

METHODOLOGY_VERSION = "state-auditor-2020"
INDICATORS = (
    "general_fund_reserves", "debt_burden", "liquidity", "revenue_trends",
    "pension_obligations", "pension_funding", "pension_costs", "future_pension_costs",
    "opeb_obligations", "opeb_funding",
)
MAX_POINTS = {
    "general_fund_reserves": 30, "debt_burden": 15, "liquidity": 10, "revenue_trends": 5,
    "pension_obligations": 10, "pension_funding": 5, "pension_costs": 5,
    "future_pension_costs": 5, "opeb_obligations": 10, "opeb_funding": 5,
}
HIGH, MODERATE, LOW = "HIGH", "MODERATE", "LOW"
OVERALL_HIGH_AT_MOST, OVERALL_LOW_AT_LEAST = 41.76, 71.24
SCORE_COLUMNS = ["city", "fiscal_year", "overall_points", "overall_risk", "gf_reserves_trend",
                 *(f"{i}_{part}" for i in INDICATORS for part in ("ratio", "points", "risk"))]


def excel_round(values, digits: int = 2) -> pd.Series | np.ndarray:
    """ROUND half away from zero on the decimal value. Rounding the scaled value to 9
    places first removes the binary error (416.49999999999994 -> 416.5) before halving."""
    scale = 10.0**digits
    scaled = np.round(np.abs(np.asarray(values, dtype=float)) * scale, 9)
    rounded = np.sign(values) * np.floor(scaled + 0.5) / scale
    return rounded + 0.0  # no negative zeros


def _truncate(values, digits: int = 2):
    scale = 10.0**digits
    return np.trunc(np.round(np.asarray(values, dtype=float) * scale, 9)) / scale


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """ROUNDed ratio; missing where either side is missing or the denominator is 0."""
    return pd.Series(excel_round(numerator / denominator.where(denominator != 0)),
                     index=numerator.index)


def _mean_of_available(*changes: pd.Series) -> pd.Series:
    return pd.Series(excel_round(pd.concat(changes, axis=1).mean(axis=1, skipna=True)),
                     index=changes[0].index)


def _band(ratio: pd.Series, high: pd.Series, low: pd.Series) -> pd.Series:
    return pd.Series(np.select([high, low], [HIGH, LOW], MODERATE), index=ratio.index)


def _descending(ratio: pd.Series, full_at: float, zero_at: float, slope: float,
                full_points: float) -> pd.Series:
    """Full points at or below `full_at`, 0 at or above `zero_at`, a line in between."""
    line = excel_round(slope * (zero_at - ratio))
    return pd.Series(np.where(ratio <= full_at, full_points, np.where(ratio >= zero_at, 0.0, line)),
                     index=ratio.index)


def _scaled(ratio: pd.Series, factor: float, cap: float) -> pd.Series:
    return pd.Series(np.clip(excel_round(factor * ratio), 0, cap), index=ratio.index)


def _numbers(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(frame[name], errors="coerce").astype(float)


def score(frame: pd.DataFrame) -> pd.DataFrame:
    """Scores every row: its ten indicators (ratio, points, band), trend, overall points
    and level. Never returns inf; a ratio that cannot be computed is left empty."""
    f = {name: _numbers(frame, name) for name in frame.columns
         if name not in ("city", "county", "fiscal_year")}
    gwr = f["government_wide_revenues"]
    out = pd.DataFrame({"city": frame["city"].values,
                        "fiscal_year": pd.to_numeric(frame["fiscal_year"]).astype(int).values},
                       index=frame.index)

    def put(indicator: str, ratio, points, risk):
        out[f"{indicator}_ratio"] = ratio
        out[f"{indicator}_points"] = points
        out[f"{indicator}_risk"] = risk

    # General fund reserves: level scaled by the trend of the fund balance.
    balance, prior, two_prior = (f["gf_unrestricted_fund_balance"],
                                 f["gf_unrestricted_fund_balance_prior_year"],
                                 f["gf_unrestricted_fund_balance_two_years_prior"])
    reserves = _ratio(balance, f["gf_expenditures_and_transfers_out"])
    trend = _mean_of_available(_ratio(prior - two_prior, two_prior.abs()),
                               _ratio(balance - prior, prior.abs()))
    level = np.minimum(30.0, excel_round(reserves.clip(lower=0) * 39.47))
    factor = np.clip(_truncate(0.90 + 0.50 * trend.fillna(0.0)), 0.80, 1.00)
    points = np.where(reserves.isna() | (reserves <= 0), 0.0,
                      np.where(reserves >= 0.76, 30.0, excel_round(level * factor)))
    out["gf_reserves_trend"] = trend
    put("general_fund_reserves", reserves, points,
        _band(reserves, pd.Series(points <= 6.49, index=frame.index),
              pd.Series(points >= 16.00, index=frame.index)))

    debt = _ratio(f["long_term_obligations_excl_retirement"], gwr)
    put("debt_burden", debt, _descending(debt, 0.20, 2.00, 8.33, 15.0).where(debt.notna(), 0.0),
        _band(debt, debt.isna() | (debt >= 1.00), debt < 0.40))

    liquidity = _ratio(f["gf_cash_and_investments"], f["gf_liabilities"])
    no_liabilities = f["gf_liabilities"] == 0
    put("liquidity", liquidity,
        np.where(no_liabilities, 10.0, _scaled(liquidity, 5, 10).fillna(0.0)),
        np.where(no_liabilities, LOW,
                 _band(liquidity, liquidity.isna() | (liquidity < 1.00), liquidity >= 1.50)))

    revenue, revenue_prior, revenue_two = (f["gf_revenues"], f["gf_revenues_prior_year"],
                                           f["gf_revenues_two_years_prior"])
    revenue_trend = _mean_of_available(_ratio(revenue_prior - revenue_two, revenue_two),
                                       _ratio(revenue - revenue_prior, revenue_prior))
    put("revenue_trends", revenue_trend,
        pd.Series(np.clip(excel_round(2.5 + 12.5 * revenue_trend), 0, 5),
                  index=frame.index).fillna(0.0),
        _band(revenue_trend, revenue_trend.isna() | (revenue_trend <= 0.00), revenue_trend > 0.10))

    _pension_indicators(f, gwr, put)
    _opeb_indicators(f, gwr, put)

    # No audited statements at all: every indicator scores 0 and HIGH.
    not_filed = gwr.isna() & f["gf_expenditures_and_transfers_out"].isna()
    for indicator in INDICATORS:
        out.loc[not_filed, f"{indicator}_points"] = 0.0
        out.loc[not_filed, f"{indicator}_risk"] = HIGH

    points_columns = [f"{i}_points" for i in INDICATORS]
    out["overall_points"] = excel_round(out[points_columns].sum(axis=1))
    out["overall_risk"] = np.select(
        [out["overall_points"] <= OVERALL_HIGH_AT_MOST, out["overall_points"] >= OVERALL_LOW_AT_LEAST],
        ["High", "Low"], "Moderate")
    return out[SCORE_COLUMNS]


def _pension_indicators(f: dict[str, pd.Series], gwr: pd.Series, put) -> None:
    no_plan = (f["net_pension_liability"].isna() & f["pension_plan_assets"].isna()
               & f["pension_contribution_required"].isna())

    obligations = _ratio(f["net_pension_liability"] + f["pension_related_debt"].fillna(0.0), gwr)
    obligation_points = _descending(obligations, 0.25, 1.50, 8.0, 10.0).where(obligations.notna(), 0.0)
    obligation_risk = _band(obligations, obligations.isna() | (obligations >= 1.00), obligations < 0.50)

    funding = _ratio(f["pension_plan_assets"], f["total_pension_liability"])
    funding_points = _scaled(funding, 5, 5).fillna(0.0)
    funding_risk = _band(funding, funding.isna() | (funding <= 0.70), funding > 0.80)

    costs = _ratio(f["pension_contribution_required"], gwr)
    cost_points = _descending(costs, 0.0, 0.18, 27.78, 5.0).where(costs.notna(), 0.0)
    cost_risk = _band(costs, costs.isna() | (costs >= 0.10), costs <= 0.05)

    future = _ratio(f["pension_contribution_projected"], gwr)
    # Plans outside CalPERS report no projection: half the pension-obligation points.
    outside_calpers = f["pension_contribution_projected"].isna() & ~no_plan
    future_points = _descending(future, 0.0, 0.18, 27.78, 5.0).where(future.notna(), 0.0)
    future_points = future_points.where(~outside_calpers, excel_round(obligation_points / 2))
    future_risk = _band(future_points, future_points <= 2.22, future_points > 3.33)

    for indicator, ratio, points, risk, full in (
        ("pension_obligations", obligations, obligation_points, obligation_risk, 10.0),
        ("pension_funding", funding, funding_points, funding_risk, 5.0),
        ("pension_costs", costs, cost_points, cost_risk, 5.0),
        ("future_pension_costs", future, future_points, future_risk, 5.0),
    ):
        # No pension plan at all: full points and LOW.
        put(indicator, ratio, points.where(~no_plan, full), risk.where(~no_plan, LOW))


def _opeb_indicators(f: dict[str, pd.Series], gwr: pd.Series, put) -> None:
    liability = f["net_opeb_liability"]
    no_liability = liability.isna() | (liability == 0)
    obligations = _ratio(liability, gwr).where(~no_liability)
    points = _descending(obligations, 0.25, 1.50, 8.0, 10.0).where(obligations.notna(), 0.0)
    risk = _band(obligations, obligations.isna() | (obligations >= 1.00), obligations < 0.50)
    put("opeb_obligations", obligations, points.where(~no_liability, 10.0),
        risk.where(~no_liability, LOW))

    # Reported as a ratio already; ROUNDed like every other ratio before it is scored.
    funded = pd.Series(excel_round(f["opeb_funded_ratio"]), index=f["opeb_funded_ratio"].index)
    funded_points = _scaled(funded, 5, 5)
    put("opeb_funding", funded, funded_points.where(funded.notna(), 5.0),
        _band(funded, funded <= 0.70, funded > 0.80).where(funded.notna(), LOW))


@dataclass(frozen=True)
class ScoredCities:
    """Scores of the cities that scored (with their entry version and methodology), and the
    error of each city whose scoring raised (city key -> reason)."""

    scores: pd.DataFrame
    errors: dict[str, str]


def score_cities(validated: pd.DataFrame) -> ScoredCities:
    """Scores every city at once; a city whose scoring raises is set aside, not the batch."""
    keys = validated["city"].map(city_key)

    def scores_of(cities: list[str]) -> pd.DataFrame:
        part = validated[keys.isin(cities)]
        return score(part).assign(entry_version=part["entry_version"].values,
                                  methodology_version=METHODOLOGY_VERSION)

    outcome = compute_isolated(sorted(set(keys)), scores_of)
    columns = [*SCORE_COLUMNS, "entry_version", "methodology_version"]
    scores = (pd.concat(outcome.results, ignore_index=True) if outcome.results
              else pd.DataFrame(columns=columns))
    return ScoredCities(scores, outcome.errors)
