"""Projections (METHODOLOGY.md §2) and the replay backtest (§3) on the real data."""

import numpy as np
import pandas as pd
import pytest

from refresh_assets.lib.backtest import metrics, replay
from refresh_assets.lib.projections import (
    build_history,
    match_calpers,
    normalise_name,
    projections_for,
)


def test_name_normalisation():
    assert normalise_name("City of La Cañada Flintridge") == "la canada flintridge"
    assert normalise_name("TOWN OF LOS GATOS") == "los gatos"
    assert normalise_name("San Buenaventura") == "ventura"
    assert normalise_name("Angels") == "angels camp"
    assert normalise_name("Carmel-by-the-Sea") == "carmel by the sea"


def test_ambiguous_names_stay_unmatched():
    calpers = pd.DataFrame({"agency": ["CITY OF X", "X CITY", "CITY OF Y"],
                            "city": ["X", "X City", "Y"], "employer_contribution_fy2018": [1, 2, 3]})
    match = match_calpers(pd.Series(["X", "Y", "Z"]), calpers)
    assert list(match.schedules.index) == ["Y"]
    assert match.unmatched_cities == ["X", "Z"]


def test_a_later_report_of_a_year_wins_and_earlier_ones_fill_gaps():
    entries = pd.DataFrame({
        "city": ["A", "A"], "fiscal_year": [2018, 2019],
        "gf_revenues": [100.0, 120.0], "gf_revenues_prior_year": [90.0, 101.0],
        "gf_revenues_two_years_prior": [80.0, None],
        "gf_unrestricted_fund_balance": [10.0, 11.0],
        "gf_unrestricted_fund_balance_prior_year": [None, None],
        "gf_unrestricted_fund_balance_two_years_prior": [None, None],
        "gf_expenditures_and_transfers_out": [95.0, 110.0]})
    history = build_history(entries).set_index("year")["revenue"].to_dict()
    assert history == {2016: 80.0, 2017: 90.0, 2018: 101.0, 2019: 120.0}
    assert build_history(entries, up_to_year=2018).set_index("year")["revenue"][2018] == 100.0


@pytest.mark.parametrize("methodology", ["v1.1", "v1.2"])
def test_every_projectable_city_gets_three_finite_scenarios(figures, calpers, methodology):
    yearly, summary, match = projections_for(figures, calpers, methodology=methodology)
    assert summary["city"].nunique() == 476  # Artesia has no complete year
    assert len(summary) == 3 * 476 and len(yearly) == 30 * 476
    assert np.isfinite(yearly[["revenue", "expenditures", "fund_balance"]]).all().all()
    no_cliff = summary["cliff_year"].isna()
    assert (summary.loc[no_cliff, "gap_to_close"] == 0).all()
    assert (summary.loc[~no_cliff, "gap_to_close"] > 0).all()
    assert set(summary["severity"]) <= {"immediate", "near-term", "long-term", "none"}
    assert (summary["methodology_version"] == methodology).all()
    assert (yearly["methodology_version"] == methodology).all()
    assert "Vallejo" not in match.unmatched_cities


@pytest.mark.parametrize("methodology", ["v1.1", "v1.2"])
def test_the_cliff_year_is_the_first_negative_year(figures, calpers, methodology):
    yearly, summary, _ = projections_for(figures, calpers, methodology=methodology)
    pessimistic = summary[(summary["scenario"] == "pessimistic") & summary["cliff_year"].notna()]
    city = pessimistic.iloc[0]
    path = yearly[(yearly["city"] == city["city"]) & (yearly["scenario"] == "pessimistic")]
    first_negative = path.loc[path["fund_balance"] < 0, "fiscal_year"].min()
    assert city["cliff_year"] == first_negative
    gap = max(0, (-path["fund_balance"] / path["k"]).max())
    assert city["gap_to_close"] == pytest.approx(gap)


def test_v1_1_still_reproduces_its_fund_balance_figures(figures, calpers):
    """METHODOLOGY.md: fund-balance WAPE 11.2 / 19.9 / 15.5 % against persistence
    14.5 / 19.8 / 12.3 % (t0=2018 -> FY2019, FY2020; t0=2019 -> FY2020)."""
    results = pd.concat([metrics(replay(figures, calpers, 2018, "v1.1")),
                         metrics(replay(figures, calpers, 2019, "v1.1"))])
    fund = results[results["measure"] == "fund_balance"]
    assert (fund["wape"] * 100).round(1).tolist() == [11.2, 19.9, 15.5]
    assert (fund["persistence_wape"] * 100).round(1).tolist() == [14.5, 19.8, 12.3]
    from_2018 = results[(results["fiscal_year"] <= 2020) & (results["measure"] != "fund_balance")]
    assert from_2018.head(4)["beats_persistence"].all()
    revenue_2019 = results[(results["measure"] == "revenue") & (results["k"] == 1)
                           & (results["fiscal_year"] == 2020)]
    assert not revenue_2019["beats_persistence"].iloc[0]  # the COVID year
