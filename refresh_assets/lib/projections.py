"""Ten-year projections with a fiscal-cliff year (METHODOLOGY.md §2, methodologies v1.1
and v1.2: the same base paths of revenue and expenditures, different scenario bands).

Vectorised over cities: every quantity is an array of cities, or cities x horizon (k = 1..10).
The steps, each a function a notebook can call:
  history -> base year per city -> revenue growth per city -> statewide priors per base
  year (median growth; v1.2's variances) -> pension factors from the CalPERS schedule ->
  base paths -> scenarios (v1.1 or v1.2) -> results per scenario.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd

from refresh_assets.lib import projection_bands
from refresh_assets.lib.cities import city_key
from refresh_assets.lib.isolation import compute_isolated
from refresh_assets.lib.projection_bands import CALIBRATED, BandParameters

METHODOLOGIES = ("v1.1", "v1.2")
METHODOLOGY_VERSION = "v1.2"  # the pipeline's; v1.1 stays runnable beside it
HORIZON = np.arange(1, 11)
GROWTH_CLAMP = (-0.05, 0.08)
MIN_SPREAD, DEFAULT_SPREAD = 0.01, 0.02
OTHER_SPENDING_GROWTH = 0.025
PENSION_FALLBACK_GROWTH = 1.05
BULK_SCHEDULE_SOURCE = "calpers_valuation_2016"
ENTRY_SCHEDULE_SOURCE = "calpers_valuation_entry_{year}"  # the valuation year
FALLBACK_SCHEDULE_SOURCE = "fallback_5pct"
RESERVE_MINIMUM_SHARE = 0.167  # two months of expenditures, the GFOA minimum
NAME_ALIASES = {"san buenaventura": "ventura", "angels": "angels camp"}
REPORTED_YEARS = {  # column of an entry for year X -> the year it reports (X - lag)
    "gf_revenues": ("revenue", 0), "gf_revenues_prior_year": ("revenue", 1),
    "gf_revenues_two_years_prior": ("revenue", 2),
    "gf_unrestricted_fund_balance": ("fund_balance", 0),
    "gf_unrestricted_fund_balance_prior_year": ("fund_balance", 1),
    "gf_unrestricted_fund_balance_two_years_prior": ("fund_balance", 2),
    "gf_expenditures_and_transfers_out": ("expenditures", 0),
}
BASE_FIELDS = ("gf_revenues", "gf_expenditures_and_transfers_out", "gf_unrestricted_fund_balance")


def _numbers(frame: pd.DataFrame, columns) -> pd.DataFrame:
    return frame[list(columns)].apply(pd.to_numeric, errors="coerce").astype(float)


def build_history(entries: pd.DataFrame, up_to_year: int | None = None) -> pd.DataFrame:
    """Revenue, fund balance and expenditures per city and fiscal year. A year's value comes
    from the latest entry that reports it (X reports X, X-1, X-2); older reports fill gaps.
    Only entries of fiscal years <= `up_to_year` are read."""
    if up_to_year is not None:
        entries = entries[entries["fiscal_year"] <= up_to_year]
    values = _numbers(entries, REPORTED_YEARS).assign(
        city=entries["city"].values, entry_year=entries["fiscal_year"].astype(int).values)
    long = values.melt(id_vars=["city", "entry_year"], var_name="column", value_name="value")
    long = long.dropna(subset=["value"])
    long["measure"] = long["column"].map(lambda c: REPORTED_YEARS[c][0])
    long["year"] = long["entry_year"] - long["column"].map(lambda c: REPORTED_YEARS[c][1])
    latest = long.sort_values("entry_year").drop_duplicates(["city", "year", "measure"], keep="last")
    return latest.pivot_table(index=["city", "year"], columns="measure", values="value").reset_index()


def base_years(entries: pd.DataFrame, up_to_year: int | None = None) -> pd.DataFrame:
    """Per city its base year t0: the latest year (<= up_to_year) reporting revenue,
    expenditures and unrestricted fund balance; with R0, E0, FB0 and the t0 inputs."""
    candidates = entries if up_to_year is None else entries[entries["fiscal_year"] <= up_to_year]
    numbers = _numbers(candidates, (*BASE_FIELDS, "government_wide_revenues",
                                    "pension_contribution_required"))
    complete = candidates[numbers[list(BASE_FIELDS)].notna().all(axis=1)]
    base = complete.sort_values("fiscal_year").drop_duplicates("city", keep="last")
    n = _numbers(base, numbers.columns)
    return pd.DataFrame({
        "city": base["city"].values,
        "t0": base["fiscal_year"].astype(int).values,
        "entry_version": base["entry_version"].values if "entry_version" in base else np.nan,
        "R0": n["gf_revenues"].values,
        "E0": n["gf_expenditures_and_transfers_out"].values,
        "FB0": n["gf_unrestricted_fund_balance"].values,
        "gwr0": n["government_wide_revenues"].values,
        "pension_required0": n["pension_contribution_required"].values,
    })


def revenue_growth(history: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """g_city (CAGR over up to five positive years to t0, clamped), the number of annual
    rates, and the spread s (sample standard deviation of the rates, at least 1 pp; 2 pp
    with fewer than three rates)."""
    window = history.merge(base[["city", "t0"]], on="city")
    window = window[(window["year"] <= window["t0"]) & (window["year"] >= window["t0"] - 4)
                    & (window["revenue"] > 0)].sort_values(["city", "year"])
    ends = window.groupby("city").agg(first_year=("year", "first"), last_year=("year", "last"),
                                      first=("revenue", "first"), last=("revenue", "last"))
    span = ends["last_year"] - ends["first_year"]
    cagr = (ends["last"] / ends["first"]) ** (1 / span.where(span > 0)) - 1
    previous = window.groupby("city")[["year", "revenue"]].shift()
    consecutive = previous["year"] == window["year"] - 1
    rates = (window["revenue"] / previous["revenue"] - 1).where(consecutive)
    rate_stats = rates.groupby(window["city"]).agg(["count", "std"])
    out = base[["city"]].set_index("city")
    out["g_city"] = cagr.clip(*GROWTH_CLAMP)
    out["n_rates"] = rate_stats["count"].reindex(out.index).fillna(0).astype(int)
    spread = rate_stats["std"].reindex(out.index).clip(lower=MIN_SPREAD)
    out["s"] = spread.where(out["n_rates"] >= 3, DEFAULT_SPREAD)
    return out.reset_index()


def statewide_medians(base: pd.DataFrame, growth: pd.DataFrame) -> pd.DataFrame:
    """m(t0): the median g_city of every city projectable from the same base year, with
    how many cities share that base year."""
    by_base_year = growth.merge(base[["city", "t0"]], on="city").groupby("t0")["g_city"]
    medians = by_base_year.agg(median_growth="median", cities="size")
    return medians.reset_index().rename(columns={"t0": "base_year"})


def normalise_name(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    ascii_name = re.sub(r"^(city and county of |city of |town of )", "", ascii_name)
    ascii_name = re.sub(r" city$", "", ascii_name)
    ascii_name = re.sub(r"[-.'`,]", " ", ascii_name)
    ascii_name = re.sub(r"\s+", " ", ascii_name).strip()
    return NAME_ALIASES.get(ascii_name, ascii_name)


@dataclass(frozen=True)
class CalpersMatch:
    schedules: pd.DataFrame  # index: city; columns: fiscal years; employer contributions
    unmatched_cities: list[str]
    unmatched_agencies: list[str]


def match_calpers(cities: pd.Series, calpers: pd.DataFrame) -> CalpersMatch:
    """Exact matches on the normalised name only; a name that more than one city or agency
    holds stays unmatched. Nothing is guessed."""
    city_names = pd.Series(cities.unique())
    city_keys = city_names.map(normalise_name)
    agency_keys = calpers["city"].map(normalise_name)
    unique_cities = city_keys[~city_keys.duplicated(keep=False)]
    unique_agencies = agency_keys[~agency_keys.duplicated(keep=False)]
    matched = set(unique_cities) & set(unique_agencies)
    year_columns = {c: int(c.removeprefix("employer_contribution_fy"))
                    for c in calpers.columns if c.startswith("employer_contribution_fy")}
    schedules = calpers.loc[agency_keys.isin(matched), list(year_columns)].rename(columns=year_columns)
    schedules.index = agency_keys[agency_keys.isin(matched)].map(
        dict(zip(city_keys, city_names, strict=True)))
    return CalpersMatch(
        schedules=schedules.astype(float),
        unmatched_cities=sorted(city_names[~city_keys.isin(matched)]),
        unmatched_agencies=sorted(calpers.loc[~agency_keys.isin(matched), "agency"]),
    )


def newest_valuation_schedules(valuations: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Per city, the schedule of its newest valuation entry: the latest valuation date; the
    plans valued on that date summed per fiscal year, a year that one of them lacks left out
    (NaN). `valuations`: one row per plan (the current version of each valuation file) with
    city, valuation_date and employer_contributions (fiscal year -> USD).

    Returns the schedules (index: city; columns: fiscal years) and each city's schedule
    source, `calpers_valuation_entry_<valuation year>`."""
    if valuations.empty:
        return pd.DataFrame(dtype=float), pd.Series(dtype=object)
    dates = pd.to_datetime(valuations["valuation_date"])
    newest = valuations[dates == dates.groupby(valuations["city"]).transform("max")]
    plans = pd.DataFrame.from_records(list(newest["employer_contributions"]),
                                      index=newest["city"].to_numpy())
    plans = plans.rename(columns=int).apply(pd.to_numeric, errors="coerce").astype(float)
    plans = plans.reindex(columns=sorted(plans.columns))
    by_city = plans.groupby(level=0)
    schedules = by_city.sum().where(plans.notna().groupby(level=0).all())
    years = pd.to_datetime(newest["valuation_date"]).dt.year.groupby(newest["city"].to_numpy()).max()
    sources = years.map(lambda year: ENTRY_SCHEDULE_SOURCE.format(year=year))
    return schedules, sources


def with_entry_schedules(schedules: pd.DataFrame, entry_schedules: pd.DataFrame
                         ) -> pd.DataFrame:
    """The bulk schedules with each city that has a valuation entry given its entry's
    schedule instead (whole: the bulk years are not mixed in)."""
    if entry_schedules.empty:
        return schedules
    kept = schedules[~schedules.index.isin(entry_schedules.index)]
    combined = pd.concat([kept, entry_schedules])
    return combined.reindex(columns=sorted(combined.columns)).astype(float)


def pension_factors(base: pd.DataFrame, schedules: pd.DataFrame,
                    sources: pd.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
    """f(t0+k) per city and k: the schedule's year-on-year ratio where both years are present
    and positive, else 1.05. Returns the factors and each city's schedule source (`sources`,
    by city, names the cities' schedules that are not the 2016 bulk file's)."""
    years = base["t0"].to_numpy()[:, None] + HORIZON[None, :]
    aligned = schedules.reindex(base["city"])
    factors = np.full(years.shape, PENSION_FALLBACK_GROWTH)
    for column in aligned.columns:  # a handful of schedule years, not rows
        if column - 1 not in aligned.columns:
            continue
        current, previous = aligned[column].to_numpy(), aligned[column - 1].to_numpy()
        usable = (current > 0) & (previous > 0)
        ratio = np.where(usable, current / np.where(usable, previous, 1), np.nan)
        hit = (years == column) & usable[:, None]
        factors = np.where(hit, ratio[:, None], factors)
    named = (sources if sources is not None else pd.Series(dtype=object)).reindex(base["city"])
    source = np.where(aligned.notna().any(axis=1),
                      named.fillna(BULK_SCHEDULE_SOURCE).to_numpy(), FALLBACK_SCHEDULE_SOURCE)
    return factors, source


@dataclass(frozen=True)
class BasePaths:
    """The base paths of every city in `cities` (one row each; arrays are cities x k) and
    the assumptions behind them, shared by both methodologies."""

    cities: pd.DataFrame
    revenue: np.ndarray
    spending: np.ndarray
    pension: np.ndarray
    balance: np.ndarray  # v1.1's anchored roll-forward of the base scenario
    assumptions: pd.DataFrame

    def column(self, name: str) -> np.ndarray:
        return self.cities[name].to_numpy()


def base_paths(base: pd.DataFrame, growth: pd.DataFrame, medians: pd.Series,
               schedules: pd.DataFrame, history: pd.DataFrame,
               schedule_sources: pd.Series | None = None) -> BasePaths:
    """Revenue, expenditures (pension and the rest) and the anchored fund-balance
    roll-forward of the base scenario, with their assumptions. `medians`: m(t0) by base year;
    `schedule_sources` names the schedules that are not the 2016 bulk file's (by city)."""
    b = base.merge(growth, on="city", how="left").reset_index(drop=True)
    m = b["t0"].map(medians).to_numpy(dtype=float)
    g_city = b["g_city"].to_numpy()
    g = np.where(np.isnan(g_city), m, 0.5 * g_city + 0.5 * m)
    R0, E0, FB0 = (b[c].to_numpy() for c in ("R0", "E0", "FB0"))
    k = HORIZON[None, :]

    gwr = b["gwr0"].to_numpy()
    phi = np.where(np.isnan(gwr) | (gwr == 0), 1.0, np.clip(R0 / np.where(gwr == 0, 1, gwr), 0, 1))
    P0 = np.nan_to_num(b["pension_required0"].to_numpy()) * phi
    Q0 = np.maximum(E0 - P0, 0.0)
    factors, schedule_source = pension_factors(b, schedules, schedule_sources)
    pension = P0[:, None] * np.cumprod(factors, axis=1)
    spending = pension + Q0[:, None] * (1 + OTHER_SPENDING_GROWTH) ** k
    revenue = R0[:, None] * (1 + g[:, None]) ** k

    anchor = 0.5 * _mean_recent_balance_change(history, b)
    balance = _roll_forward(FB0, anchor, R0 - E0, revenue, spending)
    assumptions = pd.DataFrame({
        "city": b["city"], "g_city": g_city, "n_rates": b["n_rates"].fillna(0).astype(int),
        "m_t0": m, "g": g, "phi": phi, "pension_base": P0,
        "pension_schedule_source": schedule_source, "anchor": anchor,
        "entry_version": b["entry_version"],
    })
    return BasePaths(b, revenue, spending, pension, balance, assumptions)


def _roll_forward(FB0, anchor, margin0, revenue, spending) -> np.ndarray:
    """FB(k) = FB(k-1) + a * 0.5^(k-1) + [R(k) - E(k)] - [R0 - E0], from FB(0) = FB0."""
    anchor_k = anchor[:, None] * 0.5 ** (HORIZON[None, :] - 1)
    return FB0[:, None] + np.cumsum(anchor_k + (revenue - spending) - margin0[:, None], axis=1)


def scenarios_v1_1(paths: BasePaths) -> tuple[dict, pd.DataFrame]:
    """v1.1: the revenue spread s compounded each year, up for revenue and down for
    expenditures in the optimistic scenario (the reverse in the pessimistic one), and fund
    balance rolled forward from each pair. Returns the paths by scenario and the
    assumptions v1.1 adds."""
    b, k = paths.cities, HORIZON[None, :]
    s = b["s"].fillna(DEFAULT_SPREAD).to_numpy()[:, None]
    g = paths.assumptions["g"].to_numpy()[:, None]
    R0, E0, FB0 = (paths.column(c) for c in ("R0", "E0", "FB0"))
    anchor = paths.assumptions["anchor"].to_numpy()
    scenarios = {"base": (paths.revenue, paths.spending, paths.balance)}
    for name, sign in (("optimistic", 1), ("pessimistic", -1)):
        revenue = R0[:, None] * (1 + g + sign * s) ** k
        spending = paths.spending * (1 - sign * s) ** k
        scenarios[name] = (revenue, spending,
                           _roll_forward(FB0, anchor, R0 - E0, revenue, spending))
    added = pd.DataFrame({"s": s[:, 0], "band_lower_quantile": np.nan,
                          "band_upper_quantile": np.nan,
                          **{f"sigma_{m}": np.nan for m in projection_bands.MEASURES}})
    return scenarios, added


def expected_changes(paths: BasePaths, parameters: BandParameters) -> pd.DataFrame:
    """The change each measure's v1.2 base path expects next year, per city: log growth of
    revenue and expenditures, fund balance's change as a share of E0."""
    E0, FB0 = paths.column("E0"), paths.column("FB0")
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame({
            "revenue": np.log1p(paths.assumptions["g"].to_numpy()),
            "expenditures": np.log(paths.spending[:, 0] / E0),
            "fund_balance": parameters.fund_balance_path_weight
            * (paths.balance[:, 0] - FB0) / E0,
        }, index=paths.cities["city"].to_numpy())


def scenarios_v1_2(paths: BasePaths, history: pd.DataFrame, priors: pd.DataFrame,
                   parameters: BandParameters) -> tuple[dict, pd.DataFrame]:
    """v1.2: fund balance's base path is v1.1's moved part-way back toward persistence
    (FB0 + λ (FB_v1.1(k) - FB0)); each measure's band is its base path ± z c σ √k, the
    10th and 90th percentiles (projection_bands). `priors`: the statewide variances by base
    year."""
    b = paths.cities
    t0 = b["t0"]
    variance_columns = [f"{m}_variance" for m in projection_bands.MEASURES]
    missing = sorted(set(t0) - set(priors.dropna(subset=variance_columns).index))
    if missing:
        raise ValueError(f"no statewide variances for base year(s) {missing}: compute the "
                         "statewide priors (analytics/statewide_growth_medians) first, from "
                         "cities with at least two years of each measure")
    E0, FB0 = paths.column("E0"), paths.column("FB0")
    found = projection_bands.surprises(projection_bands.yearly_changes(history, b),
                                       expected_changes(paths, parameters))
    prior = priors.reindex(t0).set_axis(b["city"].to_numpy())
    sigma = projection_bands.spreads(found, prior, parameters.prior_strength)
    balance = projection_bands.fund_balance_path(FB0, paths.balance,
                                                 parameters.fund_balance_path_weight)
    base = {"revenue": paths.revenue, "expenditures": paths.spending, "fund_balance": balance}
    edges = {m: projection_bands.band_edges(
        m, base[m], projection_bands.half_widths(sigma[m].to_numpy(),
                                                 parameters.spread_multiplier[m], HORIZON), E0)
        for m in projection_bands.MEASURES}
    # Optimistic: high revenues and fund balance, low expenditures; pessimistic the reverse.
    scenarios = {
        "base": (paths.revenue, paths.spending, balance),
        "optimistic": (edges["revenue"][1], edges["expenditures"][0], edges["fund_balance"][1]),
        "pessimistic": (edges["revenue"][0], edges["expenditures"][1], edges["fund_balance"][0]),
    }
    low, high = projection_bands.BAND_QUANTILES
    added = pd.DataFrame({"s": np.nan, "band_lower_quantile": low, "band_upper_quantile": high,
                          **{f"sigma_{m}": sigma[m].to_numpy() for m in projection_bands.MEASURES}},
                         index=range(len(b)))
    return scenarios, added


def project(base: pd.DataFrame, growth: pd.DataFrame, priors: pd.DataFrame,
            schedules: pd.DataFrame, history: pd.DataFrame,
            schedule_sources: pd.Series | None = None,
            methodology: str = METHODOLOGY_VERSION,
            parameters: BandParameters = CALIBRATED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The projection of every city in `base`: (yearly rows, one summary row per scenario).
    `priors`: by base year, m(t0) (`median_growth`) and, for v1.2, the statewide variances.
    `schedule_sources` names the schedules that are not the 2016 bulk file's (by city)."""
    paths = base_paths(base, growth, priors["median_growth"], schedules, history,
                       schedule_sources)
    return project_paths(paths, history, priors, methodology, parameters)


def project_paths(paths: BasePaths, history: pd.DataFrame, priors: pd.DataFrame,
                  methodology: str = METHODOLOGY_VERSION,
                  parameters: BandParameters = CALIBRATED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scenarios of `methodology` around these base paths, as (yearly rows, one summary
    row per scenario)."""
    if methodology not in METHODOLOGIES:
        raise ValueError(f"methodology {methodology!r} is not one of {', '.join(METHODOLOGIES)}")
    b = paths.cities
    scenarios, added = (scenarios_v1_1(paths) if methodology == "v1.1"
                        else scenarios_v1_2(paths, history, priors, parameters))
    R0, E0, FB0 = (paths.column(c) for c in ("R0", "E0", "FB0"))
    yearly, summary = [], []
    for scenario, (revenue, spending, balance) in scenarios.items():
        yearly.append(_yearly_rows(b, scenario, revenue, spending, paths.pension, balance))
        summary.append(_summary_rows(b, scenario, balance, spending, R0, E0, FB0))
    assumptions = pd.concat([paths.assumptions, added.set_axis(paths.assumptions.index)], axis=1)
    assumptions["methodology_version"] = methodology
    summary_frame = pd.concat(summary, ignore_index=True).merge(assumptions, on="city")
    years = pd.concat(yearly, ignore_index=True).assign(methodology_version=methodology)
    return years, summary_frame


def _mean_recent_balance_change(history: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Mean of FB(Y) - FB(Y-1) over Y = t0-2..t0 where both are known; 0 if none."""
    h = history.merge(b[["city", "t0"]], on="city")
    h = h[(h["year"] <= h["t0"]) & (h["year"] >= h["t0"] - 3)].sort_values(["city", "year"])
    previous = h.groupby("city")[["year", "fund_balance"]].shift()
    change = (h["fund_balance"] - previous["fund_balance"]).where(previous["year"] == h["year"] - 1)
    mean = change.groupby(h["city"]).mean()
    return mean.reindex(b["city"]).fillna(0.0).to_numpy()


def _yearly_rows(b, scenario, revenue, spending, pension, balance) -> pd.DataFrame:
    n, horizon = revenue.shape
    return pd.DataFrame({
        "city": np.repeat(b["city"].to_numpy(), horizon),
        "scenario": scenario,
        "base_year": np.repeat(b["t0"].to_numpy(), horizon),
        "k": np.tile(HORIZON, n),
        "fiscal_year": (b["t0"].to_numpy()[:, None] + HORIZON[None, :]).ravel(),
        "revenue": revenue.ravel(),
        "expenditures": spending.ravel(),
        "pension_expenditures": pension.ravel(),
        "fund_balance": balance.ravel(),
    })


def _first_year(mask: np.ndarray, t0: np.ndarray) -> np.ndarray:
    """t0 + the first k where `mask` holds, else NaN."""
    any_hit = mask.any(axis=1)
    return np.where(any_hit, t0 + mask.argmax(axis=1) + 1, np.nan)


def _summary_rows(b, scenario, balance, spending, R0, E0, FB0) -> pd.DataFrame:
    t0 = b["t0"].to_numpy()
    cliff_year = _first_year(balance < 0, t0)
    k_star = cliff_year - t0
    severity = np.select([k_star <= 2, k_star <= 5, k_star <= 10],
                         ["immediate", "near-term", "long-term"], "none")
    gap = np.maximum(0.0, (-balance / HORIZON[None, :]).max(axis=1))
    gap = np.where(np.isnan(cliff_year), 0.0, gap)
    return pd.DataFrame({
        "city": b["city"], "scenario": scenario, "base_year": t0,
        "revenue_base": R0, "expenditures_base": E0, "fund_balance_base": FB0,
        "below_zero_at_base": FB0 < 0,
        "cliff_year": pd.array(cliff_year, dtype="Int64"),
        "reserve_breach_year": pd.array(
            _first_year(balance < RESERVE_MINIMUM_SHARE * spending, t0), dtype="Int64"),
        "severity": severity,
        "gap_to_close": gap, "gap_share_of_expenditures": gap / E0, "gap_share_of_revenue": gap / R0,
        "fund_balance_year_10": balance[:, -1],
    })


def _schedules(entries: pd.DataFrame, calpers: pd.DataFrame, valuations: pd.DataFrame | None
               ) -> tuple[pd.DataFrame, pd.Series, CalpersMatch]:
    """Each city's contribution schedule: its newest valuation entry's, else the bulk file's
    (by exact name); with the names of the entry schedules' sources and the name match."""
    match = match_calpers(entries["city"], calpers)
    entry_schedules, sources = newest_valuation_schedules(
        valuations if valuations is not None else pd.DataFrame())
    return with_entry_schedules(match.schedules, entry_schedules), sources, match


@dataclass(frozen=True)
class StatewidePaths:
    """Every city's base paths from the same figures, with what they were built from."""

    history: pd.DataFrame
    medians: pd.DataFrame  # m(t0) by base year (`base_year`, `median_growth`, `cities`)
    paths: BasePaths
    match: CalpersMatch

    def variances(self, parameters: BandParameters) -> pd.Series:
        """v1.2's statewide variances of yearly changes around these paths."""
        found = projection_bands.surprises(
            projection_bands.yearly_changes(self.history, self.paths.cities),
            expected_changes(self.paths, parameters))
        return projection_bands.statewide_variances(found)


def base_paths_for(entries: pd.DataFrame, calpers: pd.DataFrame,
                   valuations: pd.DataFrame | None = None, up_to_year: int | None = None
                   ) -> StatewidePaths:
    """Every city's base paths from the figures of fiscal years <= `up_to_year`, against
    the statewide m(t0) of the same figures."""
    history = build_history(entries, up_to_year)
    base = base_years(entries, up_to_year)
    growth = revenue_growth(history, base)
    medians = statewide_medians(base, growth)
    schedules, sources, match = _schedules(entries, calpers, valuations)
    paths = base_paths(base, growth, medians.set_index("base_year")["median_growth"],
                       schedules, history, sources)
    return StatewidePaths(history, medians, paths, match)


def statewide_priors(entries: pd.DataFrame, calpers: pd.DataFrame,
                     valuations: pd.DataFrame | None = None, up_to_year: int | None = None,
                     parameters: BandParameters = CALIBRATED) -> pd.DataFrame:
    """Per base year, what the per-city projections need of all cities at once: m(t0)
    (`median_growth`, `cities`) and v1.2's statewide variances of yearly changes around
    the base paths (`<measure>_variance`, one value for every base year)."""
    statewide = base_paths_for(entries, calpers, valuations, up_to_year)
    return statewide.medians.assign(**statewide.variances(parameters))


def projections_for(entries: pd.DataFrame, calpers: pd.DataFrame, up_to_year: int | None = None,
                    valuations: pd.DataFrame | None = None,
                    methodology: str = METHODOLOGY_VERSION,
                    parameters: BandParameters = CALIBRATED
                    ) -> tuple[pd.DataFrame, pd.DataFrame, CalpersMatch]:
    """Every step for every city of `entries` (validated figures, one row per city-year);
    `valuations` (valuation entries, see newest_valuation_schedules) replace the bulk
    schedule of their cities. The base paths are built once, for the priors and the
    projections alike."""
    statewide = base_paths_for(entries, calpers, valuations, up_to_year)
    priors = statewide.medians.assign(**statewide.variances(parameters)).set_index("base_year")
    yearly, summary = project_paths(statewide.paths, statewide.history, priors, methodology,
                                    parameters)
    return yearly, summary, statewide.match


class IncoherentScenarios(ValueError):
    """A city's scenarios out of order: its projection is not stored."""


# Per measure, the scenario that must be lowest and the one that must be highest.
SCENARIO_ORDER = {"revenue": ("pessimistic", "optimistic"),
                  "expenditures": ("optimistic", "pessimistic"),
                  "fund_balance": ("pessimistic", "optimistic")}


def scenario_violations(yearly: pd.DataFrame) -> dict[str, str]:
    """Per city whose scenarios are out of order (low <= base <= high, SCENARIO_ORDER) in
    some year and measure: the first such year and measure."""
    if yearly.empty:
        return {}
    wide = yearly.pivot_table(index=["city", "fiscal_year"], columns="scenario",
                              values=list(SCENARIO_ORDER))
    found: dict[str, str] = {}
    for measure, (low, high) in SCENARIO_ORDER.items():
        column = wide[measure]
        bad = (column[low] > column["base"]) | (column["base"] > column[high])
        for city, fiscal_year in bad[bad].index:
            found.setdefault(city, f"{measure} in FY{fiscal_year} is not {low} <= base <= {high}")
    return found



@dataclass(frozen=True)
class ProjectedCities:
    """Projections of the cities that projected, the cities no CalPERS schedule matched,
    and the error of each city whose projection raised (city key -> reason)."""

    yearly: pd.DataFrame
    summary: pd.DataFrame
    calpers_unmatched: list[str]
    errors: dict[str, str]


def project_cities(entries: pd.DataFrame, priors: pd.DataFrame, calpers: pd.DataFrame,
                   valuations: pd.DataFrame | None = None,
                   methodology: str = METHODOLOGY_VERSION) -> ProjectedCities:
    """Projects these cities against the given statewide priors (by base year, see
    statewide_priors), all at once; a city whose projection raises is set aside, not the
    batch. A city with valuation entries (`valuations`, see newest_valuation_schedules)
    takes its newest one's schedule instead of the bulk file's."""
    keys = entries["city"].map(city_key)
    valuations = valuations if valuations is not None else pd.DataFrame(columns=["city"])
    valuation_keys = valuations["city"].map(city_key)
    unmatched: list[str] = []

    def projections_of(cities: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        part = entries[keys.isin(cities)]
        history = build_history(part)
        base = base_years(part)
        schedules, sources, match = _schedules(part, calpers,
                                               valuations[valuation_keys.isin(cities)])
        unmatched.extend(c for c in match.unmatched_cities if c not in sources.index)
        yearly, summary = project(base, revenue_growth(history, base), priors, schedules,
                                  history, sources, methodology)
        violations = scenario_violations(yearly)
        if violations:  # isolated down to the city, which is then recorded as failed
            raise IncoherentScenarios("; ".join(f"{c}: {v}" for c, v in violations.items()))
        return yearly, summary

    outcome = compute_isolated(sorted(set(keys)), projections_of)
    yearly = pd.concat([y for y, _ in outcome.results], ignore_index=True) \
        if outcome.results else pd.DataFrame()
    summary = pd.concat([s for _, s in outcome.results], ignore_index=True) \
        if outcome.results else pd.DataFrame(columns=["city", "scenario"])
    return ProjectedCities(yearly, summary, sorted(set(unmatched)), outcome.errors)
