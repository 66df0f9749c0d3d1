"""`refresh-assets enter --type calpers_valuation` and `validate` as an operator runs them."""

import pytest
import yaml

from tests.e2e.test_entry_cli import cli, entries  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e
OPTIONS = ("--type", "calpers_valuation", "--city", "Vallejo", "--plan", "Safety Police",
           "--valuation-date", "2022-06-30", "--unfunded-accrued-liability", "98,500,000",
           "--contribution", "2024=9800000", "--contribution", "2025=10200000",
           "--contribution", "2026=10650000", "--entered-by", "tester", "--non-interactive")


def test_enter_writes_a_valuation_file_where_it_belongs_and_validate_passes_it(entries):  # noqa: F811
    result = cli("enter", *OPTIONS, "--funded-ratio", "68.4%",
                 "--document", "https://example.org/vallejo-safety-police-2022.pdf",
                 entries=entries)
    assert result.returncode == 0, result.stderr
    path = entries / "vallejo" / "calpers" / "2022-safety-police.yaml"
    written = yaml.safe_load(path.read_text())
    assert written["funded_ratio"] == 0.684
    assert written["employer_contributions"] == {2024: 9800000, 2025: 10200000, 2026: 10650000}
    assert written["source"]["title"] == ("Safety Police Plan of the City of Vallejo, Annual "
                                          "Valuation Report as of June 30, 2022")
    checked = cli("validate", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1] == "1 file(s): 0 error(s), 0 other finding(s)"
    # A folder holds both kinds: the ACFR files and the valuation file.
    assert "5 file(s): 0 error(s)" in cli("validate", str(entries)).stdout


def test_a_bad_value_is_refused_in_one_line_and_nothing_is_written(entries):  # noqa: F811
    result = cli("enter", *OPTIONS, "--funded-ratio", "68.4", entries=entries)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: not written (vallejo/calpers/2022-safety-police.yaml): --funded-ratio: "
        "funded_ratio_range: must be above 0 and at most 2: market value of assets / accrued "
        "liability, as a ratio (0.712 for 71.2%) (value: 68.4)"]
    assert not (entries / "vallejo" / "calpers").exists()

    unreadable = cli("enter", *OPTIONS, "--funded-ratio", "0.7", "--contribution", "FY2027=1",
                     entries=entries)
    assert unreadable.returncode == 2
    assert unreadable.stderr.splitlines()[-1] == (
        "Error: --contribution: contribution_format: 'FY2027=1': write FISCAL_YEAR=USD, "
        "e.g. 2025=21500000")


def test_validate_refuses_a_misplaced_valuation_file(entries):  # noqa: F811
    assert cli("enter", *OPTIONS, "--funded-ratio", "0.684", entries=entries).returncode == 0
    folder = entries / "vallejo" / "calpers"
    (folder / "2022-safety-police.yaml").rename(folder / "2021-safety-police.yaml")
    result = cli("validate", str(entries))
    assert result.returncode == 1
    assert "2021-safety-police.yaml: error: field (file): file_location: the Safety Police " \
           "valuation of Vallejo as of 2022-06-30 belongs at vallejo/calpers/" \
           "2022-safety-police.yaml: move it there" in result.stderr


def test_the_acfr_entry_schema_is_the_default_and_the_valuation_one_is_asked_for():
    acfr = cli("entry-schema")
    valuation = cli("entry-schema", "--type", "calpers_valuation")
    assert '"fiscal_year"' in acfr.stdout and '"valuation_date"' not in acfr.stdout
    assert '"valuation_date"' in valuation.stdout and '"employer_contributions"' in valuation.stdout
