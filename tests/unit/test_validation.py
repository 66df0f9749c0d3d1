"""The value rules, on the real data set and on made-up bad figures."""

from datetime import date

import pandas as pd
import pytest

from refresh_assets.lib.fiscal_inputs import read_fiscal_inputs_csv
from refresh_assets.lib.validation import (
    ValidationPolicy,
    latest_valid_versions,
    summarise,
    validate_versions,
)
from refresh_assets.settings import DATA_DIR

POLICY = ValidationPolicy(today=date(2026, 11, 22))


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    frame = read_fiscal_inputs_csv(DATA_DIR / "ca_city_fiscal_inputs.csv")
    return frame.assign(entry_version=range(1, len(frame) + 1), source_kind="bulk_import",
                        source_path="bulk")


def one_entry(**figures) -> pd.DataFrame:
    base = {"city": "Vallejo", "fiscal_year": 2019, "population": 120000,
            "gf_revenues": 100e6, "gf_expenditures_and_transfers_out": 100e6,
            "gf_unrestricted_fund_balance": 20e6, "government_wide_revenues": 200e6,
            "entry_version": 1, "source_kind": "entry_file", "source_path": "vallejo/2019.yaml"}
    return pd.DataFrame([{**base, **figures}])


def rules(issues: pd.DataFrame, severity: str) -> set[tuple[str, str]]:
    chosen = issues[issues["severity"] == severity]
    return set(zip(chosen["field"], chosen["rule"], strict=True))


def test_the_real_data_set_has_no_errors_and_its_oddities_warn(shipped):
    issues = validate_versions(shipped, POLICY)
    assert summarise(issues)["error"] == 0
    warned = issues[issues["severity"] == "warning"]
    by_rule = warned.groupby("rule")["city"].agg(set)
    assert {"Vernon", "Industry"} <= by_rule["per_capita_gf_revenue"]
    assert by_rule["overdrawn_cash"] == {"Calipatria"}
    assert (warned["rule"] == "funded_ratio_high").sum() == 14
    assert set(warned.loc[warned["rule"] == "not_filed", "fiscal_year"]) == {2017, 2018, 2020}
    assert by_rule["not_filed"] == {"Compton"}
    assert len(latest_valid_versions(shipped, issues)) == 1841


def test_a_clean_entry_has_no_issues():
    assert validate_versions(one_entry(), POLICY).empty


@pytest.mark.parametrize(("figures", "expected"), [
    ({"gf_revenues": -5.0}, ("gf_revenues", "non_negative")),
    ({"fiscal_year": 2027}, ("fiscal_year", "future_fiscal_year")),
    ({"population": 0}, ("population", "positive_population")),
    ({"opeb_funded_ratio": -0.1}, ("opeb_funded_ratio", "funded_ratio_range")),
    ({"long_term_obligations_excl_retirement": 9e11},
     ("long_term_obligations_excl_retirement", "implausible_amount")),
    ({"gf_revenues": None}, ("gf_revenues", "required")),
])
def test_errors(figures, expected):
    assert expected in rules(validate_versions(one_entry(**figures), POLICY), "error")


@pytest.mark.parametrize(("figures", "expected"), [
    ({"gf_cash_and_investments": -1.0}, ("gf_cash_and_investments", "overdrawn_cash")),
    ({"opeb_funded_ratio": 1.6}, ("opeb_funded_ratio", "funded_ratio_high")),
    ({"total_pension_liability": 57.6e9}, ("total_pension_liability", "large_amount")),
    ({"population": 100}, ("gf_revenues", "per_capita_gf_revenue")),
])
def test_warnings_do_not_block(figures, expected):
    issues = validate_versions(one_entry(**figures), POLICY)
    assert expected in rules(issues, "warning")
    assert summarise(issues)["error"] == 0


def test_required_fields_apply_to_operator_entries_only():
    bulk = one_entry(gf_revenues=None).assign(source_kind="bulk_import")
    assert ("gf_revenues", "required") not in rules(validate_versions(bulk, POLICY), "error")


def test_a_restatement_is_recorded_against_the_earlier_years_entry():
    earlier = one_entry(fiscal_year=2018, gf_revenues=90e6, entry_version=1)
    later = one_entry(fiscal_year=2019, gf_revenues_prior_year=91e6, entry_version=2)
    issues = validate_versions(pd.concat([earlier, later], ignore_index=True), POLICY)
    [restated] = issues[issues["rule"] == "restatement"].itertuples()
    assert (restated.fiscal_year, restated.field, restated.severity) == (
        2019, "gf_revenues_prior_year", "info")
    assert "FY2018 gf_revenues: entry v1 reported 90,000,000" in restated.message


def test_the_year_over_year_threshold_is_configurable():
    versions = pd.concat([one_entry(fiscal_year=2018, gf_revenues=100e6, entry_version=1),
                          one_entry(fiscal_year=2019, gf_revenues=130e6, entry_version=2)],
                         ignore_index=True)
    default = validate_versions(versions, POLICY)
    strict = validate_versions(versions, ValidationPolicy(today=POLICY.today,
                                                          year_over_year_jump=0.2))
    assert ("gf_revenues", "year_over_year_jump") not in rules(default, "warning")
    assert ("gf_revenues", "year_over_year_jump") in rules(strict, "warning")


def test_downstream_keeps_the_last_valid_version_when_the_newest_fails():
    good = one_entry(gf_revenues=100e6, entry_version=1)
    bad = one_entry(gf_revenues=-1.0, entry_version=2)
    versions = pd.concat([good, bad], ignore_index=True)
    chosen = latest_valid_versions(versions, validate_versions(versions, POLICY))
    assert chosen["entry_version"].tolist() == [1]
    fixed = one_entry(gf_revenues=105e6, entry_version=3)
    versions = pd.concat([versions, fixed], ignore_index=True)
    chosen = latest_valid_versions(versions, validate_versions(versions, POLICY))
    assert chosen["entry_version"].tolist() == [3]


def test_an_operator_entry_outranks_the_bulk_import_and_the_later_ingest_wins():
    from refresh_assets.lib.validation import current_versions

    versions = pd.DataFrame([
        {"city": "Vallejo", "fiscal_year": 2019, "entry_version": 1, "source_kind": "entry_file"},
        {"city": "Vallejo", "fiscal_year": 2019, "entry_version": 2, "source_kind": "bulk_import"},
        {"city": "Vallejo", "fiscal_year": 2019, "entry_version": 3, "source_kind": "entry_file"},
        {"city": "Vallejo", "fiscal_year": 2020, "entry_version": 4, "source_kind": "bulk_import"},
        {"city": "Vallejo", "fiscal_year": 2020, "entry_version": 5, "source_kind": "bulk_import"},
    ])
    chosen = current_versions(versions).set_index("fiscal_year")["entry_version"].to_dict()
    # The bulk re-import (2) does not displace an operator's entry; the later entry (3) wins.
    assert chosen == {2019: 3, 2020: 5}
    # The order rows arrive in does not matter.
    shuffled = current_versions(versions.sample(frac=1, random_state=7))
    assert shuffled.set_index("fiscal_year")["entry_version"].to_dict() == chosen


def test_a_refused_operator_entry_holds_the_city_on_its_valid_bulk_version():
    from refresh_assets.lib.validation import validate_cities

    base = {"city": "Benicia", "fiscal_year": 2019, "population": 28000,
            "gf_revenues": 40e6, "gf_expenditures_and_transfers_out": 39e6,
            "gf_unrestricted_fund_balance": 10e6, "government_wide_revenues": 80e6}
    versions = pd.DataFrame([
        {**base, "entry_version": 10, "source_kind": "bulk_import", "source_path": "bulk#b/2019"},
        {**base, "gf_revenues": -5, "entry_version": 11, "source_kind": "entry_file",
         "source_path": "benicia/2019.yaml"},
    ])
    outcome = validate_cities(versions)
    assert outcome.valid["entry_version"].tolist() == [10]
    assert outcome.refused_cities == ["Benicia"]
    assert outcome.refused[["source_path", "field", "rule"]].values.tolist() == [
        ["benicia/2019.yaml", "gf_revenues", "non_negative"]]
