"""The State Auditor's method (METHODOLOGY.md §1), against published results and edge cases."""

import numpy as np
import pandas as pd
import pytest

from refresh_assets.lib.fiscal_inputs import FIELD_NAMES
from refresh_assets.lib.scoring import INDICATORS, excel_round, score


def test_excel_round_is_half_away_from_zero_on_the_decimal_value():
    assert excel_round(4.165) == 4.17  # the float is 4.16499999...
    assert excel_round(-4.165) == -4.17
    assert excel_round(0.125) == 0.13
    assert excel_round(2.675) == 2.68
    assert excel_round(1.004999) == 1.0
    assert np.isnan(excel_round(np.nan))


def city_year(**figures) -> pd.DataFrame:
    """A healthy city-year; override what the case needs (None = not reported)."""
    row = dict.fromkeys(FIELD_NAMES)
    row.update(city="Testville", county="Test", fiscal_year=2019, population=50000,
               gf_revenues=50e6, gf_revenues_prior_year=48e6, gf_revenues_two_years_prior=46e6,
               gf_unrestricted_fund_balance=20e6, gf_unrestricted_fund_balance_prior_year=19e6,
               gf_unrestricted_fund_balance_two_years_prior=18e6,
               gf_expenditures_and_transfers_out=50e6, gf_cash_and_investments=30e6,
               gf_liabilities=10e6, long_term_obligations_excl_retirement=10e6,
               government_wide_revenues=100e6, net_pension_liability=40e6,
               pension_related_debt=0.0, pension_plan_assets=80e6, total_pension_liability=100e6,
               pension_contribution_required=5e6, pension_contribution_projected=7e6,
               net_opeb_liability=10e6, opeb_funded_ratio=0.2)
    row.update(figures)
    return pd.DataFrame([row])


def one(**figures) -> pd.Series:
    result = score(city_year(**figures)).iloc[0]
    points = result[[f"{i}_points" for i in INDICATORS]].astype(float)
    assert points.notna().all() and np.isfinite(points).all()
    assert np.isclose(result["overall_points"], points.sum())
    return result


def test_a_healthy_city_year():
    result = one()
    assert result["general_fund_reserves_ratio"] == 0.4
    assert result["gf_reserves_trend"] == 0.06  # ROUND(mean(0.06, 0.05)) = ROUND(0.055)
    # L = ROUND(0.40 * 39.47) = 15.79; F = trunc(0.90 + 0.03) = 0.93; ROUND(15.79 * 0.93)
    assert result["general_fund_reserves_points"] == 14.68
    assert result["debt_burden_points"] == 15.0 and result["debt_burden_risk"] == "LOW"
    assert result["liquidity_ratio"] == 3.0 and result["liquidity_points"] == 10.0


def test_no_audited_statements_scores_zero_and_high_everywhere():
    result = one(government_wide_revenues=None, gf_expenditures_and_transfers_out=None)
    assert result["overall_points"] == 0.0 and result["overall_risk"] == "High"
    assert all(result[f"{i}_risk"] == "HIGH" for i in INDICATORS)


def test_only_one_year_means_no_trend_and_a_factor_of_0_90():
    result = one(gf_unrestricted_fund_balance_prior_year=None,
                 gf_unrestricted_fund_balance_two_years_prior=None,
                 gf_revenues_prior_year=None, gf_revenues_two_years_prior=None)
    assert np.isnan(result["gf_reserves_trend"])
    assert result["general_fund_reserves_points"] == excel_round(15.79 * 0.90)
    assert result["revenue_trends_points"] == 0.0 and result["revenue_trends_risk"] == "HIGH"


def test_zero_and_negative_denominators_never_give_inf():
    result = one(gf_expenditures_and_transfers_out=0.0, government_wide_revenues=0.0,
                 gf_unrestricted_fund_balance_prior_year=0.0, gf_revenues_prior_year=0.0)
    assert result["general_fund_reserves_points"] == 0.0
    assert result["debt_burden_points"] == 0.0 and result["debt_burden_risk"] == "HIGH"
    assert np.isnan(result["debt_burden_ratio"])


def test_no_liabilities_means_full_liquidity_points():
    result = one(gf_liabilities=0.0)
    assert (result["liquidity_points"], result["liquidity_risk"]) == (10.0, "LOW")
    assert np.isnan(result["liquidity_ratio"])


def test_no_pension_plan_means_full_points_and_low():
    result = one(net_pension_liability=None, pension_plan_assets=None,
                 pension_contribution_required=None, total_pension_liability=None,
                 pension_contribution_projected=None, pension_related_debt=None)
    for indicator, full in (("pension_obligations", 10), ("pension_funding", 5),
                            ("pension_costs", 5), ("future_pension_costs", 5)):
        assert (result[f"{indicator}_points"], result[f"{indicator}_risk"]) == (full, "LOW")


def test_a_plan_outside_calpers_gets_half_the_obligation_points():
    result = one(pension_contribution_projected=None)
    assert result["future_pension_costs_points"] == excel_round(
        result["pension_obligations_points"] / 2)


def test_missing_or_zero_opeb():
    for liability in (None, 0.0):
        result = one(net_opeb_liability=liability, opeb_funded_ratio=None)
        assert (result["opeb_obligations_points"], result["opeb_obligations_risk"]) == (10.0, "LOW")
        assert (result["opeb_funding_points"], result["opeb_funding_risk"]) == (5.0, "LOW")


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_extreme_values_stay_within_each_indicators_points(scale):
    result = one(long_term_obligations_excl_retirement=10e6 * scale,
                 gf_cash_and_investments=30e6 * scale, net_pension_liability=40e6 * scale)
    assert 0 <= result["debt_burden_points"] <= 15
    assert 0 <= result["liquidity_points"] <= 10
    assert 0 <= result["pension_obligations_points"] <= 10
