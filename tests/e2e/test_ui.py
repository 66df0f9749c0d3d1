"""The Dagster UI (webserver + daemon, as `make ui` starts it) serves the lineage graph."""

import os

import pytest

from tests.conftest import run_cli
from tests.ui_fixtures import graphql, running_ui

pytestmark = pytest.mark.e2e

ASSET_NODES = """
{ assetNodes { assetKey { path } groupName dependencyKeys { path }
               assetChecksOrError { ... on AssetChecks { checks { name } } } } }
"""


@pytest.fixture(scope="module")
def ui_url(warehouse, dbt_manifest, tmp_path_factory):
    with running_ui(tmp_path_factory.mktemp("ui") / "ui.log") as url:
        yield url


def test_the_ui_shows_python_and_dbt_assets_in_one_graph_with_checks(ui_url):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in graphql(ui_url, ASSET_NODES)["assetNodes"]}
    mart = nodes["marts/city_fiscal_years"]
    staging = nodes["staging/stg_analytics__validated_fiscal_data"]
    validated = nodes["analytics/validated_fiscal_data"]
    assert [d["path"] for d in mart["dependencyKeys"]] == [
        ["staging", "stg_analytics__validated_fiscal_data"]]
    assert [d["path"] for d in staging["dependencyKeys"]] == [["analytics", "validated_fiscal_data"]]
    assert [d["path"] for d in validated["dependencyKeys"]] == [["raw", "fiscal_entries"]]
    assert nodes["raw/fiscal_entries"]["groupName"] == "ingestion"
    assert {c["name"] for c in validated["assetChecksOrError"]["checks"]} == {
        "no_validation_errors", "stored_rows_pass_error_rules"}
    checks = {c["name"] for c in mart["assetChecksOrError"]["checks"]}
    assert "unique_city_fiscal_years_city_fiscal_year_id" in checks


def test_refresh_submits_follows_and_a_second_request_waits_for_the_first(ui_url):
    env = {**os.environ, "REFRESH_UI_PORT": ui_url.rsplit(":", 1)[1]}
    first = run_cli("refresh", "--city", "Vallejo", "--no-follow", env=env)
    first_run = first.stdout.split("submitted run ")[1].split()[0]
    second = run_cli("refresh", "--city", "vallejo", env=env, timeout=900)
    assert f"run {first_run} holds vallejo: started by manual" in second.stdout
    # The running daemon's entries sensor may have asked for Vallejo too: it queues the same way.
    assert "this refresh waits in the queue" in second.stdout
    second_run = second.stdout.split("submitted run ")[1].split()[0]
    assert f"run {second_run}: success" in second.stdout
    assert "done      reports__change_report" in second.stdout
    assert "vallejo: refreshed (" in second.stdout


SCHEDULES = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    schedules { name cronSchedule executionTimezone scheduleState { status } }
    sensors { name sensorState { status } } } } } }
"""


def test_the_ui_lists_the_forecast_schedules_running(ui_url):
    [repository] = graphql(ui_url, SCHEDULES)["repositoriesOrError"]["nodes"]
    schedules = {s["name"]: s for s in repository["schedules"]}
    assert schedules["forecast_aggregates_schedule"]["cronSchedule"] == "*/30 * * * *"
    assert schedules["forecast_snapshot_schedule"]["cronSchedule"] == "10 3 * * *"
    assert schedules["forecast_snapshot_schedule"]["executionTimezone"] == "UTC"
    assert {s["scheduleState"]["status"] for s in schedules.values()} == {"RUNNING"}
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    assert sensors["marts_automation"] == "RUNNING"
