"""`refresh-assets enter` and `validate` as an operator runs them (real subprocesses)."""

import os
import shutil
import subprocess

import pytest
import yaml

from refresh_assets.settings import PROJECT_DIR
from tests.conftest import VENV_BIN

pytestmark = pytest.mark.e2e


def cli(*args, entries=None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ.copy()
    if entries is not None:
        env["REFRESH_ENTRIES_DIR"] = str(entries)
    return subprocess.run([str(VENV_BIN / "refresh-assets"), *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def entries(tmp_path):
    shutil.copytree(PROJECT_DIR / "entries" / "vallejo", tmp_path / "vallejo")
    return tmp_path


def test_validate_passes_the_shipped_entries():
    result = cli("validate", str(PROJECT_DIR / "entries"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 file(s): 0 error(s)" in result.stdout


def test_validate_names_file_field_rule_and_value_and_fails(entries):
    path = entries / "vallejo" / "2019.yaml"
    document = yaml.safe_load(path.read_text())
    document["figures"]["gf_revenues"] = -100
    document["figures"]["gf_cash_and_investments"] = -1
    path.write_text(yaml.safe_dump(document))
    result = cli("validate", str(path))
    assert result.returncode == 1
    assert (f"{path}: error: field gf_revenues: non_negative: cannot be negative in audited"
            " statements (value: -100)") in result.stderr
    # A warning is printed but alone would not fail.
    assert "warning: field gf_cash_and_investments: overdrawn_cash" in result.stdout


def test_validate_warnings_alone_exit_zero(entries):
    path = entries / "vallejo" / "2019.yaml"
    document = yaml.safe_load(path.read_text())
    document["figures"]["opeb_funded_ratio"] = 1.7
    path.write_text(yaml.safe_dump(document))
    result = cli("validate", str(path))
    assert result.returncode == 0
    assert "funded_ratio_high" in result.stdout


def test_validate_a_future_year_and_a_misspelt_field(entries):
    future = entries / "vallejo" / "2031.yaml"
    document = yaml.safe_load((entries / "vallejo" / "2020.yaml").read_text())
    document["fiscal_year"] = 2031
    future.write_text(yaml.safe_dump(document))
    typo = entries / "vallejo" / "2020.yaml"
    typo.write_text(typo.read_text().replace("gf_liabilities:", "gf_liabilites:"))
    result = cli("validate", str(future), str(typo))
    assert result.returncode == 1
    assert "field fiscal_year: future_fiscal_year" in result.stderr
    assert "field figures.gf_liabilites: known_field: unknown field; did you mean gf_liabilities?" \
        in result.stderr


def test_validate_reports_every_problem_of_a_file_in_one_pass(entries):
    path = entries / "vallejo" / "2019.yaml"
    text = path.read_text()
    for good, bad in (("gf_revenues: 110163546", "gf_revenues: abc"),
                      ("gf_expenditures_and_transfers_out: ", "gf_expenditures_and_transfers_out: -"),
                      ("population:", "populaton:")):
        assert good in text
        text = text.replace(good, bad, 1)
    path.write_text(text)
    result = cli("validate", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: error: field figures.gf_revenues: type:decimal_parsing: Input should be a "
        "valid decimal (value: 'abc')",
        f"{path}: error: field figures.populaton: known_field: unknown field; did you mean "
        "population?",
        f"{path}: error: field gf_expenditures_and_transfers_out: non_negative: cannot be "
        "negative in audited statements (value: -108,170,371)",
    ]
    # Its other years' files are the context of the rules that compare years.
    assert result.stdout.splitlines() == [
        f"{path}: warning: field gf_expenditures_and_transfers_out: year_over_year_jump: "
        "changed -202% from the year before (threshold 50%) (value: -108,170,371)",
        "1 file(s): 3 error(s), 1 other finding(s)",
    ]


def test_validate_refuses_folders_that_are_not_city_keys_and_files_not_in_utf8(entries):
    for folder in ("atlantis", "Vallejo"):
        (entries / folder).mkdir()
        shutil.copy(entries / "vallejo" / "2019.yaml", entries / folder / "2019.yaml")
    latin1 = entries / "vallejo" / "2020.yaml"
    latin1.write_bytes(latin1.read_bytes() + "notes: Caf\u00e9\n".encode("latin-1"))
    result = cli("validate", str(entries))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{entries / 'Vallejo' / '2019.yaml'}: error: field (file): city_folder: folder " \
           "'Vallejo' is not a city key (lower case ascii with hyphens): move its files to " \
           "vallejo/" in lines
    assert f"{entries / 'atlantis' / '2019.yaml'}: error: field (file): city_folder: folder " \
           "'atlantis' is not a known city key: move its files to the folder of their city, " \
           "e.g. adelanto/ (the closest known key)" in lines
    [utf8] = [line for line in lines if ": utf8: " in line]
    assert utf8.startswith(f"{latin1}: error: field (file): utf8: not UTF-8 text: byte 0xe9 at")
    assert "cannot be decoded; save the file as UTF-8" in utf8


def test_enter_non_interactive_writes_a_valid_file(entries):
    result = cli("enter", "--city", "Benicia", "--fiscal-year", "2021", "--non-interactive",
                 "--document-title", "Benicia ACFR FY2020-21", "--entered-by", "tester",
                 "--set", "population=27000", "--set", "gf_revenues=$45,000,000",
                 "--set", "gf_expenditures_and_transfers_out=44000000",
                 "--set", "gf_unrestricted_fund_balance=12000000",
                 "--set", "government_wide_revenues=80000000", entries=entries)
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load((entries / "benicia" / "2021.yaml").read_text())
    assert written["figures"]["gf_revenues"] == 45000000
    assert cli("validate", str(entries / "benicia" / "2021.yaml")).returncode == 0


def test_enter_refuses_errors_and_writes_nothing(entries):
    result = cli("enter", "--city", "Benicia", "--fiscal-year", "2021", "--non-interactive",
                 "--document-title", "x", "--set", "population=27000", entries=entries)
    assert result.returncode == 1
    assert "field gf_revenues: required" in result.stderr
    assert not (entries / "benicia").exists()


def test_enter_an_unknown_city_suggests_the_closest(entries):
    result = cli("enter", "--city", "Valejo", "--fiscal-year", "2021", "--non-interactive",
                 entries=entries)
    assert result.returncode == 2
    assert "did you mean Vallejo?" in result.stderr


def test_enter_prompts_field_by_field_and_reprompts_bad_values(entries):
    answers = [
        "abc", "-3", "121000",            # population: not a number, negative, then fine
        "-5", "112,000,000",               # gf_revenues: negative refused, then fine
        "", "",                            # prior-year revenues: the FY2020 file's values
        "26000000", "", "",                # fund balance; prior years offered from files
        "109000000",                       # expenditures
        "", "", "",                        # cash, liabilities, long-term obligations: none
        "", "220000000",                   # government-wide revenues: required, re-asked
    ] + [""] * 8 + [
        "Vallejo ACFR FY2020-21",          # document title
        "y",                               # write it
    ]
    result = cli("enter", "--city", "Vallejo", "--fiscal-year", "2021", "--entered-by", "op",
                 entries=entries, stdin="\n".join(answers) + "\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not a number" in result.stderr + result.stdout
    assert "cannot be negative" in result.stderr + result.stdout
    assert "government_wide_revenues: required in an operator entry" in result.stdout
    assert "(FY2020: 120,747)" in result.stdout  # last year's value shown as a hint
    figures = yaml.safe_load((entries / "vallejo" / "2021.yaml").read_text())["figures"]
    fy2020 = yaml.safe_load((entries / "vallejo" / "2020.yaml").read_text())["figures"]
    assert figures["population"] == 121000
    assert figures["gf_revenues"] == 112000000
    assert figures["gf_revenues_prior_year"] == fy2020["gf_revenues"]
    assert figures["gf_revenues_two_years_prior"] == fy2020["gf_revenues_prior_year"]
    assert figures["gf_unrestricted_fund_balance_prior_year"] == fy2020[
        "gf_unrestricted_fund_balance"]
