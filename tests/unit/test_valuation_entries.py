"""CalPERS valuation files: schema, place and value rules (each can fail), the newest
valuation's schedule in the pension factors, and the entries sensor's view of them."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refresh_assets.lib.entries import find_entry_files
from refresh_assets.lib.entry_watch import scan_entries
from refresh_assets.lib.projections import (
    newest_valuation_schedules,
    pension_factors,
    project_cities,
    with_entry_schedules,
)
from refresh_assets.lib.valuation_entries import (
    ValuationEntryFile,
    check_valuation_files,
    find_valuation_files,
    read_valuation_file,
    validate_paths,
    valuation_json_schema,
    valuations_to_frame,
    write_valuation_file,
)
from refresh_assets.lib.valuation_store import canonical_checksum
from refresh_assets.settings import PROJECT_DIR

TODAY = date(2026, 11, 20)
NAME = "vallejo/calpers/2022-miscellaneous.yaml"
VALID = """city: Vallejo
plan: Miscellaneous
valuation_date: 2022-06-30
funded_ratio: 0.712
unfunded_accrued_liability: 215000000
employer_contributions:
  2024: 21500000
  2025: 22300000
  2026: 23100000
source:
  title: Miscellaneous Plan of the City of Vallejo, Annual Valuation Report as of June 30, 2022
  pages: {employer_contributions: 9}
entered_by: tester
entered_at: 2026-11-20T10:00:00Z
"""


def write(entries: Path, text: str, name: str = NAME) -> Path:
    path = entries / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def read(entries: Path, text: str, name: str = NAME):
    return read_valuation_file(write(entries, text, name), entries, today=TODAY)


def rules(problems) -> list[tuple[str, str, str]]:
    return [(p.field, p.rule, p.severity) for p in problems]


def with_contributions(text: str, contributions: dict[int, int]) -> str:
    head, _, tail = text.partition("employer_contributions:\n")
    tail = tail[tail.index("source:"):]
    lines = "".join(f"  {year}: {amount}\n" for year, amount in contributions.items())
    return f"{head}employer_contributions:\n{lines}{tail}"


def test_a_valid_file_is_read_with_no_problem(tmp_path):
    parsed, problems = read(tmp_path, VALID)
    assert problems == []
    assert parsed.relative_path == NAME
    assert parsed.entry.plan_key == "miscellaneous" and parsed.entry.valuation_year == 2022
    assert parsed.entry.employer_contributions[2025] == Decimal(22300000)


@pytest.mark.parametrize(("ratio", "expected"), [
    ("0", [("funded_ratio", "funded_ratio_range", "error")]),
    ("-0.2", [("funded_ratio", "funded_ratio_range", "error")]),
    ("2.5", [("funded_ratio", "funded_ratio_range", "error")]),
    ("71.2", [("funded_ratio", "funded_ratio_range", "error")]),  # a percentage, not a ratio
    ("0.35", [("funded_ratio", "funded_ratio_unusual", "warning")]),
    ("1.5", [("funded_ratio", "funded_ratio_unusual", "warning")]),
    ("2", [("funded_ratio", "funded_ratio_unusual", "warning")]),
    ("1.2", []),
])
def test_the_funded_ratio_rules(tmp_path, ratio, expected):
    parsed, problems = read(tmp_path, VALID.replace("funded_ratio: 0.712", f"funded_ratio: {ratio}"))
    assert rules(problems) == expected
    assert (parsed is None) == any(severity == "error" for _, _, severity in expected)


@pytest.mark.parametrize(("contributions", "expected"), [
    ({2024: 100}, [("employer_contributions", "contribution_years", "error")]),
    ({2024: 100, 2026: 110}, [("employer_contributions", "consecutive_years", "error")]),
    ({2024: 100, 2025: 0, 2026: 110},
     [("employer_contributions.2025", "positive_contribution", "error")]),
    ({2024: 100, 2025: -5}, [("employer_contributions.2025", "positive_contribution", "error")]),
    ({2023: 100, 2024: 105}, [("employer_contributions", "first_contribution_year", "warning")]),
    ({2024: 100, 2025: 151}, [("employer_contributions.2025", "contribution_jump", "warning")]),
    ({2024: 100, 2025: 49}, [("employer_contributions.2025", "contribution_jump", "warning")]),
    ({2024: 100, 2025: 150, 2026: 75}, []),
])
def test_the_contribution_rules(tmp_path, contributions, expected):
    parsed, problems = read(tmp_path, with_contributions(VALID, contributions))
    assert rules(problems) == expected
    assert (parsed is None) == any(severity == "error" for _, _, severity in expected)


def test_a_valuation_date_in_the_future_is_refused(tmp_path):
    text = with_contributions(VALID.replace("2022-06-30", "2026-12-31"), {2028: 1, 2029: 1})
    parsed, problems = read(tmp_path, text, "vallejo/calpers/2026-miscellaneous.yaml")
    assert parsed is None
    assert rules(problems) == [("valuation_date", "future_valuation_date", "error")]


def test_every_problem_of_a_file_at_once(tmp_path):
    text = (VALID.replace("funded_ratio: 0.712", "funded_ratio: 3")
            .replace("unfunded_accrued_liability: 215000000", "unfunded_accrued_liability: abc")
            .replace("entered_by: tester\n", "enterd_by: tester\n")
            .replace("  2025: 22300000\n", "  2025: -1\n"))
    parsed, problems = read(tmp_path, text)
    assert parsed is None
    assert {p.file for p in problems} == {NAME}
    assert rules(problems) == [
        ("unfunded_accrued_liability", "type:decimal_parsing", "error"),
        ("entered_by", "required", "error"),
        ("enterd_by", "known_field", "error"),
        ("funded_ratio", "funded_ratio_range", "error"),
        ("employer_contributions.2025", "positive_contribution", "error"),
    ]
    assert "did you mean entered_by?" in problems[2].message


def test_pages_must_name_valuation_fields(tmp_path):
    parsed, problems = read(tmp_path, VALID.replace("{employer_contributions: 9}",
                                                    "{gf_revenues: 9}"))
    assert parsed is None
    assert rules(problems) == [("source", "type:value_error", "error")]


@pytest.mark.parametrize(("name", "rule"), [
    ("vallejo/calpers/2021-miscellaneous.yaml", "file_location"),   # not its valuation year
    ("vallejo/calpers/2022-misc.yaml", "file_location"),            # not its plan key
    ("benicia/calpers/2022-miscellaneous.yaml", "file_location"),   # not its city
    ("atlantis/calpers/2022-miscellaneous.yaml", "city_folder"),
    ("Vallejo/calpers/2022-miscellaneous.yaml", "city_folder"),
])
def test_a_file_belongs_at_its_city_year_and_plan(tmp_path, name, rule):
    parsed, problems = read(tmp_path, VALID, name)
    assert parsed is None
    assert [p.rule for p in problems] == [rule]


def test_an_unknown_city_and_an_unreadable_name_are_refused(tmp_path):
    _, problems = read(tmp_path, VALID.replace("city: Vallejo", "city: Valejo"))
    assert rules(problems) == [("city", "known_city", "error")]
    assert "did you mean Vallejo?" in problems[0].message
    _, problems = read(tmp_path, VALID.replace("plan: Miscellaneous\n", "").replace(
        "valuation_date: 2022-06-30", "valuation_date: June 2022"), "vallejo/calpers/misc.yaml")
    assert [p.rule for p in problems] == ["required", "type:date_from_datetime_parsing",
                                          "file_name"]


def test_two_files_of_the_same_plan_and_year_are_refused(tmp_path):
    first = write(tmp_path, VALID)
    second = write(tmp_path, VALID, NAME.replace(".yaml", ".yml"))
    parsed, problems = check_valuation_files([first, second], tmp_path, today=TODAY)
    assert parsed == []
    assert [p.rule for p in problems] == ["one_file_per_plan_year"] * 2


def test_written_files_read_back_the_same(tmp_path):
    parsed, _ = read(tmp_path, VALID)
    path = write_valuation_file(tmp_path / "out", parsed.entry)
    assert path == tmp_path / "out" / NAME
    again, problems = read_valuation_file(path, tmp_path / "out", today=TODAY)
    assert problems == [] and again.entry == parsed.entry


def test_acfr_files_and_valuation_files_are_found_apart(tmp_path):
    write(tmp_path, "a: 1\n", "vallejo/2019.yaml")
    write(tmp_path, VALID)
    assert find_entry_files(tmp_path) == [tmp_path / "vallejo" / "2019.yaml"]
    assert find_entry_files(tmp_path / "vallejo") == [tmp_path / "vallejo" / "2019.yaml"]
    assert find_valuation_files(tmp_path) == [tmp_path / NAME]


def test_validate_checks_both_kinds_in_a_folder(tmp_path):
    for year in (2017, 2018, 2019, 2020):
        write(tmp_path, (PROJECT_DIR / "entries" / "vallejo" / f"{year}.yaml").read_text(),
              f"vallejo/{year}.yaml")
    write(tmp_path, VALID.replace("funded_ratio: 0.712", "funded_ratio: 0"))
    files, problems = validate_paths([tmp_path], today=TODAY)
    assert len(files) == 5
    assert [(p.file, p.rule) for p in problems] == [
        (str(tmp_path / NAME), "funded_ratio_range")]


def test_the_entries_sensor_sees_a_new_valuation_file(tmp_path):
    write(tmp_path, "a: 1\n", "vallejo/2019.yaml")
    first = scan_entries(tmp_path, None)
    write(tmp_path, VALID)
    second = scan_entries(tmp_path, first.cursor)
    assert second.changed_by_city == {"vallejo": [NAME]}
    assert scan_entries(tmp_path, second.cursor).changed_by_city == {}


def test_the_published_json_schema_is_current():
    shipped = PROJECT_DIR / "entries" / "calpers_valuation.schema.json"
    assert shipped.read_text() == valuation_json_schema()


def test_the_checksum_is_that_of_the_content_not_of_how_it_was_read(tmp_path):
    parsed, _ = read(tmp_path, VALID)
    row = valuations_to_frame([parsed]).iloc[0].to_dict()
    again = {**row, "funded_ratio": Decimal("0.7120"),
             "employer_contributions": {k: float(v) for k, v in
                                        reversed(row["employer_contributions"].items())}}
    assert canonical_checksum(again) == canonical_checksum(row)
    assert canonical_checksum({**row, "funded_ratio": Decimal("0.713")}) != canonical_checksum(row)


def valuations(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["city", "valuation_date", "employer_contributions"])


def test_the_newest_valuation_sums_its_plans_and_drops_years_a_plan_lacks():
    schedules, sources = newest_valuation_schedules(valuations(
        ("A", date(2022, 6, 30), {"2024": 100, "2025": 110, "2026": 120}),
        ("A", date(2022, 6, 30), {"2024": 50, "2025": 60}),        # no 2026: 2026 not used
        ("A", date(2021, 6, 30), {"2023": 1, "2024": 2}),          # older: ignored
        ("B", date(2023, 6, 30), {"2025": 10, "2026": "20"}),
    ))
    assert schedules.loc["A"].to_dict() == {2024: 150.0, 2025: 170.0, 2026: pytest.approx(np.nan,
                                                                                        nan_ok=True)}
    assert schedules.loc["B", 2026] == 20.0 and np.isnan(schedules.loc["B", 2024])
    assert sources.to_dict() == {"A": "calpers_valuation_entry_2022",
                                 "B": "calpers_valuation_entry_2023"}


def test_an_entry_schedule_replaces_the_bulk_one_and_factors_fall_back_to_5pct():
    bulk = pd.DataFrame({2024: [5.0, 6.0], 2025: [6.0, 7.0]}, index=["A", "C"])
    entry, sources = newest_valuation_schedules(valuations(
        ("A", date(2022, 6, 30), {"2024": 100, "2025": 150, "2026": 0}),
        ("B", date(2022, 6, 30), {"2025": 10, "2027": 30}),
    ))
    base = pd.DataFrame({"city": ["A", "B", "C", "D"], "t0": [2023] * 4})
    factors, source = pension_factors(base, with_entry_schedules(bulk, entry), sources)
    assert factors[0, 1] == pytest.approx(1.5)  # A: 150 / 100 for FY2025, not the bulk 6/5
    assert factors[0, 2] == 1.05                # A: FY2026 not positive
    assert (factors[1] == 1.05).all()           # B: no two consecutive years
    assert factors[2, 1] == pytest.approx(7 / 6)  # C keeps the bulk schedule
    assert (factors[3] == 1.05).all()           # D: no schedule
    assert list(source) == ["calpers_valuation_entry_2022", "calpers_valuation_entry_2022",
                            "calpers_valuation_2016", "fallback_5pct"]


def test_a_valuation_entry_changes_its_city_projection_alone():
    from refresh_assets.lib.fiscal_inputs import read_fiscal_inputs_csv
    from refresh_assets.settings import DATA_DIR

    figures = read_fiscal_inputs_csv(DATA_DIR / "ca_city_fiscal_inputs.csv")
    figures = figures[figures["city"].isin(["Vallejo", "Benicia"])]
    calpers = pd.read_csv(DATA_DIR / "calpers_valuations_2016.csv")
    medians = pd.DataFrame({"median_growth": [0.03], "revenue_variance": [0.004],
                            "expenditures_variance": [0.006], "fund_balance_variance": [0.005]},
                           index=[2020])
    before = project_cities(figures, medians, calpers)
    schedule = {str(y): 20_000_000 * 1.1 ** (y - 2024) for y in range(2024, 2031)}
    after = project_cities(figures, medians, calpers, valuations(
        ("Vallejo", date(2022, 6, 30), schedule)))
    pd.testing.assert_frame_equal(before.yearly[before.yearly["city"] == "Benicia"],
                                  after.yearly[after.yearly["city"] == "Benicia"])
    pension = after.yearly[(after.yearly["city"] == "Vallejo") & (after.yearly["scenario"] == "base")]
    ratio = pension.set_index("fiscal_year")["pension_expenditures"]
    assert ratio[2027] / ratio[2026] == pytest.approx(1.1)
    assert ratio[2024] / ratio[2023] == pytest.approx(1.05)  # before the schedule: fallback
    sources = after.summary.set_index(["city", "scenario"])["pension_schedule_source"]
    assert sources["Vallejo", "base"] == "calpers_valuation_entry_2022"
    assert sources["Benicia", "base"] == "calpers_valuation_2016"


def test_the_model_is_the_schema_of_the_cli_and_the_pipeline():
    entry = ValuationEntryFile.model_validate({
        "city": "Vallejo", "plan": "Safety Police", "valuation_date": "2022-06-30",
        "funded_ratio": "0.6", "unfunded_accrued_liability": -5,
        "employer_contributions": {"2024": 1, "2025": 2}, "source": {"title": "t"},
        "entered_by": "x", "entered_at": "2026-11-20T10:00:00Z"})
    assert entry.plan_key == "safety-police"
    assert entry.employer_contributions == {2024: Decimal(1), 2025: Decimal(2)}
