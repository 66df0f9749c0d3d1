"""`dbt build` on the real test server: every model, data test and unit test passes, and
the issues mart shows only each city's current issues."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from refresh_assets.lib.database import warehouse_connection
from refresh_assets.settings import DBT_PROJECT_DIR, PROJECT_DIR
from tests.conftest import VENV_BIN

pytestmark = pytest.mark.integration

# Cities of this test only: other tests share the warehouse, and the real data set has
# no such key.
FIXED, FLAGGED = "dbt-test-fixed-city", "dbt-test-flagged-city"


def dbt_build(target: Path, *select: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Runs `dbt build` as the CLI's environment would, into its own target folder (the
    manifest Dagster loads stays as `refresh-assets dbt prepare` wrote it)."""
    args = [str(VENV_BIN / "dbt"), "build", "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target),
            "--log-path", str(target / "logs"), "--no-use-colors"]
    if select:
        args += ["--select", *select]
    result = subprocess.run(args, cwd=PROJECT_DIR, env=os.environ.copy(), capture_output=True,
                            text=True, timeout=900, check=False)
    assert result.returncode == 0, f"dbt build exited {result.returncode}:\n{result.stdout}"
    return result, json.loads((target / "run_results.json").read_text())


@pytest.fixture(scope="module")
def full_build(warehouse, dbt_manifest, tmp_path_factory):
    """The whole project built once: the views the unit tests and the marts read exist."""
    result, run_results = dbt_build(tmp_path_factory.mktemp("dbt_target"))
    return result, run_results, json.loads(dbt_manifest.read_text())


def test_dbt_build_passes_every_model_data_test_and_unit_test(full_build):
    result, run_results, manifest = full_build
    statuses = {r["unique_id"]: r["status"] for r in run_results["results"]}
    # Exposures (the BI consumers) are listed by a build but have nothing to run.
    exposures = {uid for uid in statuses if uid.startswith("exposure.")}
    assert {statuses[uid] for uid in exposures} <= {"no-op"}
    assert {s for uid, s in statuses.items() if uid not in exposures} <= {"success", "pass"}, statuses
    unit_tests = {uid for uid in statuses if uid.startswith("unit_test.")}
    # Every unit test the project declares ran (a selector or a parse change cannot
    # leave some out silently), among them those of the issues mart.
    assert unit_tests == set(manifest["unit_tests"])
    assert len([u for u in unit_tests if ".fiscal_validation_issues." in u]) == 3
    assert len(unit_tests) >= 7
    assert any(uid.startswith("test.") for uid in statuses)  # the data tests ran too
    assert "ERROR=0" in result.stdout


@pytest.fixture
def validations_of_two_cities(warehouse):
    """FIXED: an error, then a clean validation. FLAGGED: validated once, by the same first
    run, with a warning. Removed afterwards, and the mart rebuilt without them."""
    def delete(cur):
        for table in ("city_validations", "validation_results"):
            cur.execute(f"delete from ops.{table} where city_key in (%s, %s)", (FIXED, FLAGGED))

    with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
        delete(cur)
        cur.execute("""
            insert into ops.city_validations (run_id, city_key, validated_at, errors, warnings, infos)
            values ('dbt-test-run-1', %(fixed)s, now() - interval '2 hours', 1, 0, 0),
                   ('dbt-test-run-1', %(flagged)s, now() - interval '2 hours', 0, 1, 0),
                   ('dbt-test-run-2', %(fixed)s, now() - interval '1 hour', 0, 0, 0)
        """, {"fixed": FIXED, "flagged": FLAGGED})
        cur.execute("""
            insert into ops.validation_results (run_id, validated_at, city_key, city, fiscal_year,
                entry_version, source_path, field, rule, severity, value, message)
            values ('dbt-test-run-1', now() - interval '2 hours', %(fixed)s, 'Fixed City', 2023,
                    null, 'dbt-test-fixed-city/2023.yaml', 'gf_revenues', 'required', 'error',
                    null, 'gf_revenues is required'),
                   ('dbt-test-run-1', now() - interval '2 hours', %(flagged)s, 'Flagged City', 2023,
                    null, 'dbt-test-flagged-city/2023.yaml', 'gf_cash_and_investments',
                    'overdrawn_cash', 'warning', '-5', 'negative general fund cash')
        """, {"fixed": FIXED, "flagged": FLAGGED})
    yield
    with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
        delete(cur)


def test_the_issues_mart_shows_only_each_citys_latest_validation(
        full_build, validations_of_two_cities, warehouse, tmp_path):
    _, run_results = dbt_build(tmp_path, "fiscal_validation_issues+")
    assert "model.refresh_assets.fiscal_validation_issues" in {
        r["unique_id"] for r in run_results["results"]}
    with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
        cur.execute("select city, rule, severity, run_id from marts.fiscal_validation_issues"
                    " where city in ('Fixed City', 'Flagged City') order by city, rule")
        rows = cur.fetchall()
    # The fixed city's error is gone although its run is the flagged city's latest.
    assert rows == [("Flagged City", "overdrawn_cash", "warning", "dbt-test-run-1")]


@pytest.fixture(scope="module", autouse=True)
def rebuild_the_mart_without_test_rows(full_build, tmp_path_factory):
    """Leaves marts.fiscal_validation_issues as the shared warehouse's data makes it."""
    yield
    dbt_build(tmp_path_factory.mktemp("dbt_target_after"), "fiscal_validation_issues")
