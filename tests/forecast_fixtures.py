"""Shared by the forecast-layer tests: `dbt build` into a test's own target folder, and
projections stored as the projections asset stores them."""

import json
import os
import subprocess
from pathlib import Path

import pandas as pd

from refresh_assets.lib.analytics_store import SUMMARY_COLUMNS, YEAR_COLUMNS, append_projections
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.settings import DBT_PROJECT_DIR, PROJECT_DIR
from tests.conftest import VENV_BIN

# The methodology of the test projections: no real projection has it.
METHOD = "forecast-test"


def dbt_build(target: Path, *select: str, dbt_vars: dict | None = None,
              env: dict[str, str] | None = None, check: bool = True,
              debug: bool = False, data_tests: bool = True) -> subprocess.CompletedProcess[str]:
    """`dbt build` as the assets run it (unit tests excluded), into its own target folder;
    without data tests if not `data_tests` (those between models of the selection and others)."""
    args = [str(VENV_BIN / "dbt"), "build", "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target),
            "--log-path", str(target / "logs"), "--no-use-colors",
            "--exclude-resource-type", "unit_test", *([] if data_tests else ["test"])]
    if debug:
        args.append("--debug")
    if select:
        args += ["--select", *select]
    if dbt_vars is not None:
        args += ["--vars", json.dumps(dbt_vars)]
    result = subprocess.run(args, cwd=PROJECT_DIR, env={**os.environ, **(env or {})},
                            capture_output=True, text=True, timeout=900, check=False)
    if check:
        assert result.returncode == 0, f"dbt build exited {result.returncode}:\n{result.stdout}"
    return result


def projection_frames(city: str, base_year: int, revenue: float, expenditures: float,
                      fund_balance: float, years: int = 3, methodology: str = METHOD,
                      band_quantiles: tuple[float, float] | None = (0.1, 0.9),
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One city's projection in the frames analytics/projections appends: per scenario,
    revenues growing by 1, 2 or 3 a year and expenditures by 3, 2 or 1 (pessimistic, base,
    optimistic), so the base scenario lies inside the band of every measure. Its band stands
    for `band_quantiles` with v1.2's spreads, or, with None, is v1.1's (spread s, no
    quantiles)."""
    v1_1 = band_quantiles is None
    low, high = (None, None) if v1_1 else band_quantiles
    yearly, summary = [], []
    for scenario, growth, spending in (("pessimistic", 1, 3), ("base", 2, 2), ("optimistic", 3, 1)):
        for k in range(1, years + 1):
            yearly.append({
                "city": city, "scenario": scenario, "base_year": base_year, "k": k,
                "fiscal_year": base_year + k, "revenue": revenue + growth * k,
                "expenditures": expenditures + spending * k, "pension_expenditures": 0.0,
                "fund_balance": fund_balance + (growth - spending) * k,
                "methodology_version": methodology,
            })
        summary.append({
            "city": city, "scenario": scenario, "base_year": base_year, "revenue_base": revenue,
            "expenditures_base": expenditures, "fund_balance_base": fund_balance,
            "below_zero_at_base": False, "cliff_year": None, "reserve_breach_year": None,
            "severity": "none", "gap_to_close": 0.0, "gap_share_of_expenditures": None,
            "gap_share_of_revenue": None,
            "fund_balance_year_10": fund_balance + (growth - spending) * years,
            "g_city": None, "n_rates": 0, "m_t0": None, "g": None,
            "s": 0.02 if v1_1 else None, "phi": 0.0,
            "pension_base": 0.0, "pension_schedule_source": "none", "anchor": 0.0,
            "sigma_revenue": None if v1_1 else 0.03,
            "sigma_expenditures": None if v1_1 else 0.02,
            "sigma_fund_balance": None if v1_1 else 0.05,
            "band_lower_quantile": low, "band_upper_quantile": high,
            "methodology_version": methodology, "entry_version": None,
        })
    yearly_frame, summary_frame = pd.DataFrame(yearly), pd.DataFrame(summary)
    # Exactly the columns the store writes (run_id and city_key it adds itself).
    assert set(yearly_frame) == set(YEAR_COLUMNS) - {"run_id", "city_key"}
    assert set(summary_frame) == set(SUMMARY_COLUMNS) - {"run_id", "city_key"}
    return yearly_frame, summary_frame


def store_projections(address, run_id: str, *frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Appends one projection run of the given cities, as the projections asset does."""
    yearly = pd.concat([f[0] for f in frames], ignore_index=True)
    summary = pd.concat([f[1] for f in frames], ignore_index=True)
    with warehouse_connection(address) as conn:
        append_projections(conn, run_id, yearly, summary)
