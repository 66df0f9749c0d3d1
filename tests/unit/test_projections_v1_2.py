"""Projections v1.2 (METHODOLOGY.md §2 v1.2): hand-computed cities, coherent bands, the
replay table of the methodology, and the cross-validated choice of its parameters."""

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from refresh_assets.lib.backtest import fund_balance_band_widths, replay_metrics, targets
from refresh_assets.lib.projection_bands import CALIBRATED
from refresh_assets.lib.projection_calibration import calibrate
from refresh_assets.lib.projections import (
    base_years,
    build_history,
    project,
    projections_for,
    revenue_growth,
)

Z = NormalDist().inv_cdf(0.9)  # the band is the 10th-90th percentile
LAMBDA = CALIBRATED.fund_balance_path_weight
NU0, C = CALIBRATED.prior_strength, CALIBRATED.spread_multiplier
PRIORS = pd.DataFrame({"median_growth": [0.05], "revenue_variance": [0.0004],
                       "expenditures_variance": [0.0009], "fund_balance_variance": [0.0025]},
                      index=[2020])


def entries(city, revenue, fund_balance, expenditures, pension=0.0, gwr=None):
    """Two entries (FY2019, FY2020) reporting revenue and fund balance for 2017-2020 and
    expenditures for 2019-2020. Lists are by year 2017..2020 (expenditures 2019..2020)."""
    rows = []
    for year, at in ((2019, 2), (2020, 3)):
        rows.append({
            "city": city, "fiscal_year": year, "entry_version": year,
            "gf_revenues": revenue[at], "gf_revenues_prior_year": revenue[at - 1],
            "gf_revenues_two_years_prior": revenue[at - 2],
            "gf_unrestricted_fund_balance": fund_balance[at],
            "gf_unrestricted_fund_balance_prior_year": fund_balance[at - 1],
            "gf_unrestricted_fund_balance_two_years_prior": fund_balance[at - 2],
            "gf_expenditures_and_transfers_out": expenditures[at - 2],
            "government_wide_revenues": gwr, "pension_contribution_required": pension,
        })
    return pd.DataFrame(rows)


def v1_2(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    history, base = build_history(frame), base_years(frame)
    return project(base, revenue_growth(history, base), PRIORS, pd.DataFrame(), history,
                   methodology="v1.2")


def shrunk_sigma(departures: list[float], measure: str) -> float:
    prior = PRIORS[f"{measure}_variance"].iloc[0]
    return math.sqrt((sum(d * d for d in departures) + NU0[measure] * prior)
                     / (len(departures) + NU0[measure]))


def test_a_growing_city_by_hand():
    # Revenue +5 % a year (so g = ½·5 % + ½·5 % = 5 % and its changes depart by 0);
    # expenditures +2.5 % (no pension: E = E0·1.025^k, departure 0); fund balance +2 a year.
    frame = entries("Growville", [100, 105, 110.25, 115.7625], [20, 22, 24, 26], [100, 102.5])
    yearly, summary = v1_2(frame)
    R0, E0, FB0 = 115.7625, 102.5, 26.0

    # v1.1's anchored roll-forward: a = ½ · mean(+2, +2, +2) = 1, halving each year.
    v11, balance = [], FB0
    for k in range(1, 11):
        balance += 1 * 0.5 ** (k - 1) + (R0 * 1.05 ** k - E0 * 1.025 ** k) - (R0 - E0)
        v11.append(balance)
    base_fb = [FB0 + LAMBDA * (b - FB0) for b in v11]
    expected_change = base_fb[0] - FB0  # what the base path expects next year
    sigma = {
        "revenue": shrunk_sigma([0, 0, 0], "revenue"),
        "expenditures": shrunk_sigma([0], "expenditures"),
        "fund_balance": shrunk_sigma([(2 - expected_change) / E0] * 3, "fund_balance"),
    }
    got = yearly.set_index(["scenario", "k"])
    for k in (1, 4, 10):
        half = {m: Z * C[m] * sigma[m] * math.sqrt(k) for m in sigma}
        assert got.loc[("base", k), "revenue"] == pytest.approx(R0 * 1.05 ** k)
        assert got.loc[("optimistic", k), "revenue"] == pytest.approx(
            R0 * 1.05 ** k * math.exp(half["revenue"]))
        assert got.loc[("pessimistic", k), "revenue"] == pytest.approx(
            R0 * 1.05 ** k * math.exp(-half["revenue"]))
        assert got.loc[("optimistic", k), "expenditures"] == pytest.approx(
            E0 * 1.025 ** k * math.exp(-half["expenditures"]))
        assert got.loc[("pessimistic", k), "expenditures"] == pytest.approx(
            E0 * 1.025 ** k * math.exp(half["expenditures"]))
        assert got.loc[("base", k), "fund_balance"] == pytest.approx(base_fb[k - 1])
        for scenario, sign in (("optimistic", 1), ("pessimistic", -1)):
            assert got.loc[(scenario, k), "fund_balance"] == pytest.approx(
                base_fb[k - 1] + sign * half["fund_balance"] * E0)
    row = summary.set_index("scenario").loc["base"]
    assert row["sigma_fund_balance"] == pytest.approx(sigma["fund_balance"])
    assert (row["band_lower_quantile"], row["band_upper_quantile"]) == (0.1, 0.9)
    assert math.isnan(row["s"])  # v1.1's spread plays no part
    assert set(yearly["methodology_version"]) == set(summary["methodology_version"]) == {"v1.2"}
    assert summary["cliff_year"].isna().all()


def test_a_declining_city_by_hand():
    # Revenue −4 % a year against a statewide +5 %: g = ½(−4 %) + ½(5 %) = 0.5 %. Pension 10
    # of which the general fund's share is φ = 88.4736 / 176.9472 = ½, growing 5 % a year
    # (no CalPERS schedule); the rest 101 − 5 = 96 grows 2.5 %. Fund balance −6 a year.
    revenue = [100, 96, 92.16, 88.4736]
    frame = entries("Shrinkton", revenue, [30, 24, 18, 12], [100, 101], pension=10.0,
                    gwr=176.9472)
    yearly, summary = v1_2(frame)
    R0, E0, FB0, g = 88.4736, 101.0, 12.0, 0.005

    def spending(k):
        return 5 * 1.05 ** k + 96 * 1.025 ** k

    v11, balance = [], FB0
    for k in range(1, 11):  # a = ½ · mean(−6, −6, −6) = −3
        balance += -3 * 0.5 ** (k - 1) + (R0 * (1 + g) ** k - spending(k)) - (R0 - E0)
        v11.append(balance)
    base_fb = [FB0 + LAMBDA * (b - FB0) for b in v11]
    sigma = {
        "revenue": shrunk_sigma([math.log(0.96) - math.log(1 + g)] * 3, "revenue"),
        "expenditures": shrunk_sigma([math.log(1.01) - math.log(spending(1) / E0)],
                                     "expenditures"),
        "fund_balance": shrunk_sigma([(-6 - (base_fb[0] - FB0)) / E0] * 3, "fund_balance"),
    }
    got = yearly.set_index(["scenario", "k"])
    for k in (1, 10):
        half = {m: Z * C[m] * sigma[m] * math.sqrt(k) for m in sigma}
        assert got.loc[("base", k), "revenue"] == pytest.approx(R0 * (1 + g) ** k)
        assert got.loc[("pessimistic", k), "revenue"] == pytest.approx(
            R0 * (1 + g) ** k * math.exp(-half["revenue"]))
        assert got.loc[("base", k), "expenditures"] == pytest.approx(spending(k))
        assert got.loc[("pessimistic", k), "expenditures"] == pytest.approx(
            spending(k) * math.exp(half["expenditures"]))
        assert got.loc[("base", k), "fund_balance"] == pytest.approx(base_fb[k - 1])
        assert got.loc[("pessimistic", k), "fund_balance"] == pytest.approx(
            base_fb[k - 1] - half["fund_balance"] * E0)
    cliffs = summary.set_index("scenario")["cliff_year"]
    first_negative = {s: next((2020 + k for k in range(1, 11)
                               if got.loc[(s, k), "fund_balance"] < 0), None)
                      for s in ("base", "pessimistic", "optimistic")}
    assert first_negative["pessimistic"] is not None  # the band reaches below zero
    for scenario, year in first_negative.items():
        assert (pd.isna(cliffs[scenario]) if year is None else cliffs[scenario] == year)


def test_bands_are_coherent_and_grow_with_the_square_root_of_the_horizon(figures, calpers):
    yearly, summary, _ = projections_for(figures, calpers, methodology="v1.2")
    wide = yearly.pivot_table(index=["city", "k"], columns="scenario",
                              values=["revenue", "expenditures", "fund_balance"])
    for measure in ("revenue", "fund_balance"):
        assert (wide[measure, "pessimistic"] <= wide[measure, "base"]).all()
        assert (wide[measure, "base"] <= wide[measure, "optimistic"]).all()
    assert (wide["expenditures", "optimistic"] <= wide["expenditures", "base"]).all()
    assert (wide["expenditures", "base"] <= wide["expenditures", "pessimistic"]).all()
    half = (wide["fund_balance", "optimistic"] - wide["fund_balance", "pessimistic"]) / 2
    per_sqrt_k = half / np.sqrt(half.index.get_level_values("k"))
    assert np.allclose(per_sqrt_k.groupby(level="city").std(), 0, atol=1e-3)
    widths = fund_balance_band_widths(yearly, summary)
    assert widths[10] / widths[1] == pytest.approx(math.sqrt(10))


# docs/METHODOLOGY.md §2 v1.2, "Replay": (base year, fiscal year, measure) -> WAPE %,
# persistence WAPE %, band coverage %, false cliffs (fund balance).
REPLAY_TABLE = {
    (2018, 2019, "revenue"): (5.3, 9.2, 83.2, None),
    (2018, 2019, "expenditures"): (7.0, 8.5, 76.3, None),
    (2018, 2019, "fund_balance"): (13.8, 14.5, 76.8, 7),
    (2018, 2020, "revenue"): (5.8, 9.2, 80.5, None),
    (2018, 2020, "expenditures"): (7.9, 11.9, 83.1, None),
    (2018, 2020, "fund_balance"): (18.5, 19.8, 74.1, 9),
    (2019, 2020, "revenue"): (7.8, 5.2, 71.8, None),
    (2019, 2020, "expenditures"): (6.1, 7.0, 83.4, None),
    (2019, 2020, "fund_balance"): (11.8, 12.3, 87.7, 3),
}


def test_the_replay_reproduces_the_methodology_table(figures, calpers):
    results = replay_metrics(figures, calpers, "v1.2").set_index(
        ["base_year", "fiscal_year", "measure"])
    assert set(results.index) == set(REPLAY_TABLE)
    for cell, (wape, persistence, coverage, false_cliffs) in REPLAY_TABLE.items():
        row = results.loc[cell]
        assert row["wape"] * 100 == pytest.approx(wape, abs=0.15), cell
        assert row["persistence_wape"] * 100 == pytest.approx(persistence, abs=0.15), cell
        assert row["band_coverage"] * 100 == pytest.approx(coverage, abs=0.5), cell
        if false_cliffs is not None:
            assert row["false_cliffs"] == false_cliffs, cell


def test_the_targets_met_and_the_trade_off_left(figures, calpers):
    v12, v11 = (replay_metrics(figures, calpers, m) for m in ("v1.2", "v1.1"))
    widths = fund_balance_band_widths(*projections_for(figures, calpers, methodology="v1.2")[:2])
    met = {t.name.split(" ")[0] + " " + t.name.split(" ")[1]: t.met
           for t in targets(v12, v11, widths)}
    assert met == {"band coverage": True, "fund-balance WAPE": True, "false cliffs": False,
                   "year-10 fund-balance": True}
    v11_widths = fund_balance_band_widths(
        *projections_for(figures, calpers, methodology="v1.1")[:2])
    assert v11_widths[10] / v11_widths[1] > 10  # v1.1's compounding, the reason for v1.2


def test_the_shipped_parameters_are_the_cross_validated_choice(figures, calpers):
    result = calibrate(figures, calpers)
    assert result.chosen == CALIBRATED
    coverage = result.out_of_fold["band_coverage"]
    assert coverage.between(0.70, 0.90).all(), result.out_of_fold
    assert len(result.by_fold) == 5


def test_v1_2_without_statewide_variances_says_what_to_compute(figures):
    frame = entries("Growville", [100, 105, 110.25, 115.7625], [20, 22, 24, 26], [100, 102.5])
    history, base = build_history(frame), base_years(frame)
    with pytest.raises(ValueError, match=r"no statewide variances for base year\(s\) \[2020\]"):
        project(base, revenue_growth(history, base), PRIORS[["median_growth"]].assign(
            revenue_variance=np.nan, expenditures_variance=np.nan, fund_balance_variance=np.nan),
            pd.DataFrame(), history, methodology="v1.2")


def test_a_city_with_scenarios_out_of_order_is_set_aside(figures, calpers, monkeypatch):
    from refresh_assets.lib import projections

    real_project = projections.project

    def swapped_for_vallejo(*args, **kwargs):
        yearly, summary = real_project(*args, **kwargs)
        vallejo = yearly["city"] == "Vallejo"
        scenario = yearly.loc[vallejo, "scenario"]
        yearly.loc[vallejo, "scenario"] = scenario.replace(
            {"optimistic": "pessimistic", "pessimistic": "optimistic"})
        return yearly, summary

    monkeypatch.setattr(projections, "project", swapped_for_vallejo)
    part = figures[figures["city"].isin(["Vallejo", "Benicia", "Fairfield"])]
    priors = projections.statewide_priors(figures, calpers).set_index("base_year")
    projected = projections.project_cities(part, priors, calpers)
    assert set(projected.summary["city"]) == {"Benicia", "Fairfield"}
    assert list(projected.errors) == ["vallejo"]
    assert projected.errors["vallejo"].startswith(
        "IncoherentScenarios: Vallejo: revenue in FY2021 is not pessimistic <= base <= optimistic")


@pytest.mark.parametrize("methodology", ["v1.1", "v1.2"])
def test_a_city_without_a_base_year_projects_to_nothing_without_error(figures, calpers,
                                                                     methodology):
    from refresh_assets.lib.projections import project_cities, statewide_priors

    priors = statewide_priors(figures, calpers).set_index("base_year")
    # Artesia never reports revenue, expenditures and fund balance in the same year.
    projected = project_cities(figures[figures["city"] == "Artesia"], priors, calpers,
                               methodology=methodology)
    assert projected.errors == {} and projected.summary.empty and projected.yearly.empty
