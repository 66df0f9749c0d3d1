"""`refresh-assets backtest` prints v1.1 and v1.2 side by side with v1.2's targets;
`calibrate` recomputes the cross-validated choice of v1.2's parameters."""

import json

import pytest

from refresh_assets.settings import DATA_DIR
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

FIGURES = str(DATA_DIR / "ca_city_fiscal_inputs.csv")


def test_both_methodologies_side_by_side_with_the_targets():
    out = run_cli("backtest", "--input", FIGURES).stdout
    header = out.splitlines()[0].split()
    assert header[:3] == ["replay", "measure", "cities"]
    assert "v1.1" in header and "v1.2" in header
    fund_2019 = next(line for line in out.splitlines()
                     if line.startswith("2019 → 2020 fund_balance"))
    # WAPE v1.1, WAPE v1.2, persistence, coverage v1.1, coverage v1.2, false cliffs ×2
    assert fund_2019.split()[4:] == ["422", "15.5", "11.8", "12.3", "75.6", "87.7", "1", "3"]
    assert "met      band coverage 70%–90% in all 9 cells: 71.8%–87.7%" in out
    assert "not met  false cliffs no more than v1.1's: 7 vs 5 / 9 vs 7 / 3 vs 1" in out
    assert "v1.2: median fund-balance band half-width 14.2% of expenditures at year 1, " \
           "44.8% at year 10" in out


def test_one_methodology_as_json():
    result = json.loads(run_cli("backtest", "--input", FIGURES, "--methodology", "v1.1",
                                "--base-year", "2019", "--json").stdout)
    assert list(result) == ["v1.1"]
    cells = {(r["fiscal_year"], r["measure"]) for r in result["v1.1"]["replays"]}
    assert cells == {(2020, "revenue"), (2020, "expenditures"), (2020, "fund_balance")}


def test_calibrate_finds_the_shipped_parameters():
    result = run_cli("calibrate", "--input", FIGURES)
    assert "fold 5/5" in result.stderr  # progress goes to stderr
    lines = result.stdout.splitlines()
    assert lines[5].startswith("all folds:  λ=0.15; revenue ν0=32 c=1.6")
    assert lines[6].endswith("(the same)")
