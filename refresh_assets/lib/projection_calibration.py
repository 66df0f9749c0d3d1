"""Cross-validated choice of v1.2's tuned parameters (METHODOLOGY.md §2 v1.2, "Calibration").

The replays' cities are split into folds by county (a county's cities share their local
economy, so a fold never learns from its neighbours). On the other folds, in order:
  λ, the fund-balance path weight, minimises fund balance's WAPE relative to persistence's
  in the worst replay cell (the target is to beat persistence in every one);
  then per measure, ν0 (prior strength) and c (spread multiplier) minimise the mean
  interval score of the 10th-90th percentile band, as a share of base-year expenditures.
Each fold's parameters forecast its own cities: those out-of-fold figures judge the method.
The shipped parameters are the choice on all folds together.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from refresh_assets.lib import projection_bands
from refresh_assets.lib.backtest import REPLAY_BASE_YEARS, metrics, replay
from refresh_assets.lib.projection_bands import MEASURES, BandParameters
from refresh_assets.lib.projections import HORIZON, base_paths_for, build_history, expected_changes

FOLDS = 5
PATH_WEIGHTS = tuple(np.round(np.arange(0.0, 1.0001, 0.05), 2))
PRIOR_STRENGTHS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
SPREAD_MULTIPLIERS = tuple(np.round(np.arange(0.8, 2.6001, 0.1), 1))


def county_folds(entries: pd.DataFrame, folds: int = FOLDS) -> pd.Series:
    """Fold per city: counties sorted by name, dealt round-robin."""
    county = entries.drop_duplicates("city").set_index("city")["county"].fillna("")
    order = {name: i % folds for i, name in enumerate(sorted(county.unique()))}
    return county.map(order)


@dataclass(frozen=True)
class Replay:
    """One replay's cities (those whose base year is t0) with what the search varies."""

    t0: int
    cities: np.ndarray
    E0: np.ndarray
    FB0: np.ndarray
    base: dict[str, np.ndarray]  # measure -> cities x k (fund balance: v1.1's path)
    actual: dict[str, np.ndarray]  # measure -> cities x k, NaN where not known
    changes: pd.DataFrame
    expected: pd.DataFrame  # expected changes with λ = 1 (fund balance scales with λ)
    all_changes: pd.DataFrame  # every city's, for the statewide prior
    all_expected: pd.DataFrame


def prepare(entries: pd.DataFrame, calpers: pd.DataFrame, t0: int) -> Replay:
    statewide = base_paths_for(entries, calpers, up_to_year=t0)
    history, paths = statewide.history, statewide.paths
    unit = BandParameters(1.0, {}, {})
    all_changes = projection_bands.yearly_changes(history, paths.cities)
    all_expected = expected_changes(paths, unit)
    mine = (paths.cities["t0"] == t0).to_numpy()
    cities = paths.cities["city"].to_numpy()[mine]
    actuals = build_history(entries).set_index(["city", "year"])
    index = pd.MultiIndex.from_product([cities, t0 + HORIZON])
    actual = {m: actuals[m].reindex(index).to_numpy().reshape(len(cities), len(HORIZON))
              for m in MEASURES}
    return Replay(
        t0=t0, cities=cities, E0=paths.column("E0")[mine], FB0=paths.column("FB0")[mine],
        base={"revenue": paths.revenue[mine], "expenditures": paths.spending[mine],
              "fund_balance": paths.balance[mine]},
        actual=actual,
        changes=all_changes[all_changes["city"].isin(cities)],
        expected=all_expected.loc[cities], all_changes=all_changes, all_expected=all_expected)


def _with_weight(expected: pd.DataFrame, weight: float) -> pd.DataFrame:
    return expected.assign(fund_balance=expected["fund_balance"] * weight)


def _worst_skill(replays: list[Replay], train: list[np.ndarray], weight: float) -> float:
    """Fund balance's WAPE over persistence's, in the worst replay cell (base year, target
    year): the target is to be no worse than persistence in every one."""
    ratios = []
    for r, mask in zip(replays, train, strict=True):
        path = projection_bands.fund_balance_path(r.FB0, r.base["fund_balance"], weight)
        actual = r.actual["fund_balance"]
        for k in range(actual.shape[1]):
            known = mask & ~np.isnan(actual[:, k])
            if known.any():
                ratios.append(np.abs(path[known, k] - actual[known, k]).sum()
                              / np.abs(r.FB0[known] - actual[known, k]).sum())
    return max(ratios)


def _sigmas(r: Replay, weight: float, strength: float) -> pd.DataFrame:
    """σ of every measure for the replay's cities at this λ and ν0."""
    prior = projection_bands.statewide_variances(projection_bands.surprises(
        r.all_changes, _with_weight(r.all_expected, weight)))
    found = projection_bands.surprises(r.changes, _with_weight(r.expected, weight))
    priors = pd.DataFrame([prior.to_dict()] * len(r.cities), index=r.cities)
    return projection_bands.spreads(found, priors, dict.fromkeys(MEASURES, strength))


def _band(r: Replay, measure: str, weight: float, sigma: np.ndarray, multiplier: float):
    path = (projection_bands.fund_balance_path(r.FB0, r.base["fund_balance"], weight)
            if measure == "fund_balance" else r.base[measure])
    return projection_bands.band_edges(
        measure, path, projection_bands.half_widths(sigma, multiplier, HORIZON), r.E0)


def choose(replays: list[Replay], train: list[np.ndarray]) -> BandParameters:
    """The parameters chosen on the `train` cities of each replay (boolean masks)."""
    weight = min(PATH_WEIGHTS, key=lambda w: _worst_skill(replays, train, w))
    strength, multiplier = {}, {}
    sigmas = {nu0: [_sigmas(r, weight, nu0) for r in replays] for nu0 in PRIOR_STRENGTHS}
    for measure in MEASURES:
        def score(nu0, c, measure=measure):
            scores = []
            for r, mask, sigma in zip(replays, train, sigmas[nu0], strict=True):
                low, high = _band(r, measure, weight, sigma[measure].to_numpy(), c)
                known = mask[:, None] & ~np.isnan(r.actual[measure])
                scale = np.broadcast_to(r.E0[:, None], low.shape)
                scores.append(projection_bands.interval_score(
                    low[known], high[known], r.actual[measure][known], scale[known]))
            return np.concatenate(scores).mean()
        nu0, c = min(itertools.product(PRIOR_STRENGTHS, SPREAD_MULTIPLIERS),
                     key=lambda pair: score(*pair))
        strength[measure], multiplier[measure] = float(nu0), float(c)
    return BandParameters(float(weight), strength, multiplier)


@dataclass(frozen=True)
class Calibration:
    chosen: BandParameters  # on every city
    by_fold: dict[int, BandParameters]
    out_of_fold: pd.DataFrame  # metrics() of each fold's cities under its own parameters


def calibrate(entries: pd.DataFrame, calpers: pd.DataFrame,
              base_years=REPLAY_BASE_YEARS, folds: int = FOLDS,
              progress=lambda message: None) -> Calibration:
    fold_of = county_folds(entries, folds)
    replays = [prepare(entries, calpers, t0) for t0 in base_years]
    by_fold, pairs = {}, []
    for fold in range(folds):
        progress(f"fold {fold + 1}/{folds}: choosing on the other folds' cities")
        train = [fold_of.reindex(r.cities).to_numpy() != fold for r in replays]
        by_fold[fold] = parameters = choose(replays, train)
        held_out = set(fold_of.index[fold_of == fold])
        for t0 in base_years:
            fold_pairs = replay(entries, calpers, t0, "v1.2", parameters)
            pairs.append(fold_pairs[fold_pairs["city"].isin(held_out)])
    progress("choosing on every city")
    chosen = choose(replays, [np.ones(len(r.cities), dtype=bool) for r in replays])
    out_of_fold = pd.concat([metrics(p).assign(base_year=t0) for t0, p in
                             pd.concat(pairs).groupby("base_year")], ignore_index=True)
    return Calibration(chosen, by_fold, out_of_fold)
