"""Methodology v1.2's scenario bands (METHODOLOGY.md §2, "v1.2").

Each measure's band is its base path ± z · c · σ · √k: σ is how far the city's own yearly
changes departed from the change its base path expects, shrunk toward the statewide median;
c is the spread multiplier chosen by cross-validation (`refresh-assets calibrate`); z makes
the band the 10th–90th percentile. Revenue and expenditures move on a log scale (a band
never crosses zero), fund balance in dollars relative to base-year expenditures.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

MEASURES = ("revenue", "expenditures", "fund_balance")
BAND_QUANTILES = (0.10, 0.90)
Z = NormalDist().inv_cdf(BAND_QUANTILES[1])
CHANGE_WINDOW_YEARS = 4  # yearly changes Y = t0-3..t0, as the revenue window's five values


@dataclass(frozen=True)
class BandParameters:
    """The tuned parameters: λ, the weight of the v1.1 fund-balance path against
    persistence; ν0 per measure, the statewide prior's weight in yearly changes; c per
    measure, the spread multiplier."""

    fund_balance_path_weight: float
    prior_strength: dict[str, float]
    spread_multiplier: dict[str, float]


# Chosen by 5-fold cross-validation by county on the three replays (docs/METHODOLOGY.md
# §2 v1.2, "Calibration"); `refresh-assets calibrate` recomputes the choice.
CALIBRATED = BandParameters(
    fund_balance_path_weight=0.15,
    prior_strength={"revenue": 32.0, "expenditures": 4.0, "fund_balance": 4.0},
    spread_multiplier={"revenue": 1.6, "expenditures": 1.3, "fund_balance": 1.5},
)


def percentile_range(lower: float, upper: float) -> str:
    """(0.1, 0.9) -> "10th–90th percentile": what a band's quantiles stand for."""
    return f"{_percentile(lower)}–{_percentile(upper)} percentile"


def _percentile(quantile: float) -> str:
    """0.1 -> "10th", 0.01 -> "1st", 0.025 -> "2.5th"."""
    percent = round(quantile * 100, 6)
    if percent != int(percent):
        return f"{percent:g}th"
    n = int(percent)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def yearly_changes(history: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Per city and year Y of the window (t0-3..t0, Y-1 also known): the log change of
    revenue and of expenditures (both years positive) and the change of fund balance as a
    share of base-year expenditures E0."""
    # A city without a base year may lack a measure's column entirely.
    h = history.reindex(columns=["city", "year", *MEASURES]).merge(
        base[["city", "t0", "E0"]], on="city")
    h = h[(h["year"] <= h["t0"]) & (h["year"] >= h["t0"] - CHANGE_WINDOW_YEARS)]
    h = h.sort_values(["city", "year"]).reset_index(drop=True)
    previous = h.groupby("city")[["year", *MEASURES]].shift()
    consecutive = previous["year"] == h["year"] - 1
    changes = h[["city", "year"]].copy()
    for measure in ("revenue", "expenditures"):
        positive = (h[measure] > 0) & (previous[measure] > 0)
        ratio = h[measure] / previous[measure].where(positive)
        changes[measure] = np.log(ratio.astype(float)).where(consecutive & positive)
    changes["fund_balance"] = ((h["fund_balance"] - previous["fund_balance"]) / h["E0"]
                               ).where(consecutive)
    return changes


@dataclass(frozen=True)
class Surprises:
    """Per city (index) and measure (columns): the sum of squared departures of its yearly
    changes from the change its base path expects next year, and how many changes."""

    sum_of_squares: pd.DataFrame
    count: pd.DataFrame


def surprises(changes: pd.DataFrame, expected: pd.DataFrame) -> Surprises:
    """`expected`: per city (index), each measure's expected next-year change."""
    departures = changes[list(MEASURES)] - expected.reindex(changes["city"]).to_numpy()
    city = changes["city"].to_numpy()
    return Surprises(
        sum_of_squares=(departures ** 2).groupby(city).sum().reindex(expected.index).fillna(0.0),
        count=departures.groupby(city).count().reindex(expected.index).fillna(0).astype(int))


def statewide_variances(found: Surprises) -> pd.Series:
    """Per measure (`<measure>_variance`): the median over cities with at least one change of
    their mean squared departure. Pooled over base years: the few cities whose latest
    complete year is an older one would make a noisy median of their own."""
    mean_square = found.sum_of_squares / found.count.where(found.count > 0)
    return mean_square.median().add_suffix("_variance")


def spreads(found: Surprises, prior_variance: pd.DataFrame, strength: dict[str, float]
            ) -> pd.DataFrame:
    """σ per city and measure: √((Σ departures² + ν0 · statewide variance) / (n + ν0)),
    the city's history weighed against ν0 statewide pseudo-observations.
    `prior_variance`: per city, columns `<measure>_variance`."""
    out = pd.DataFrame(index=found.sum_of_squares.index)
    for measure in MEASURES:
        prior = prior_variance[f"{measure}_variance"].reindex(out.index)
        nu0 = strength[measure]
        out[measure] = np.sqrt((found.sum_of_squares[measure] + nu0 * prior)
                               / (found.count[measure] + nu0))
    return out


def half_widths(sigma: np.ndarray, multiplier: float, horizon: np.ndarray) -> np.ndarray:
    """z · c · σ · √k per city (rows) and horizon k (columns)."""
    return Z * multiplier * sigma[:, None] * np.sqrt(horizon)[None, :]


def fund_balance_path(FB0: np.ndarray, roll_forward: np.ndarray, weight: float) -> np.ndarray:
    """v1.2's base fund balance: FB0 + λ (FB_v1.1(k) − FB0), v1.1's anchored roll-forward
    moved part-way back toward persistence."""
    return FB0[:, None] + weight * (roll_forward - FB0[:, None])


def band_edges(measure: str, path: np.ndarray, width: np.ndarray, E0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The low and high edges of a measure's band around its base path, given the
    half-widths z c σ √k: on a log scale for revenue and expenditures (never crossing
    zero), ± width · E0 for fund balance."""
    if measure == "fund_balance":
        return path - width * E0[:, None], path + width * E0[:, None]
    return path * np.exp(-width), path * np.exp(width)


def interval_score(low, high, actual, scale, coverage: float = 0.8):
    """Gneiting and Raftery's interval score of the central `coverage` interval, divided by
    `scale`: the width plus 2/α times any miss. A proper score: it is lowest, in
    expectation, for the band whose ends are the true quantiles, so tuning on it rewards
    calibration and sharpness together."""
    alpha = 1 - coverage
    miss_low = np.clip(low - actual, 0, None)
    miss_high = np.clip(actual - high, 0, None)
    return ((high - low) + 2 / alpha * (miss_low + miss_high)) / scale
