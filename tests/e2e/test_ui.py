"""The Dagster UI (webserver + daemon, as `make ui` starts it) serves the lineage graph."""

import os
import signal
import subprocess
import time

import pytest
import requests

from tests.conftest import VENV_BIN, free_port, run_cli

pytestmark = pytest.mark.e2e

ASSET_NODES = """
{ assetNodes { assetKey { path } groupName dependencyKeys { path }
               assetChecksOrError { ... on AssetChecks { checks { name } } } } }
"""


@pytest.fixture(scope="module")
def ui_url(warehouse, dbt_manifest, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ui")
    port = free_port()
    log = (tmp_path / "ui.log").open("w")
    # Its own process group, stopped by pid: `dagster dev` ignores signals sent any other way.
    process = subprocess.Popen(
        [str(VENV_BIN / "refresh-assets"), "ui", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "ui.log").read_text()
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the UI did not answer within 180 s:\n" + (tmp_path / "ui.log").read_text())
        yield url
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: dagster dev stops its children
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_the_ui_shows_python_and_dbt_assets_in_one_graph_with_checks(ui_url):
    deadline = time.monotonic() + 120
    while True:  # the code location loads in the background after the server answers
        answer = requests.post(f"{ui_url}/graphql", json={"query": ASSET_NODES}, timeout=30).json()
        nodes = {"/".join(n["assetKey"]["path"]): n for n in answer["data"]["assetNodes"]}
        if nodes or time.monotonic() > deadline:
            break
        time.sleep(2)
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
    deadline = time.monotonic() + 120
    while True:  # the code location loads in the background after the server answers
        answer = requests.post(f"{ui_url}/graphql", json={"query": SCHEDULES}, timeout=30).json()
        nodes = answer["data"]["repositoriesOrError"].get("nodes") or []
        if nodes or time.monotonic() > deadline:
            break
        time.sleep(2)
    [repository] = nodes
    schedules = {s["name"]: s for s in repository["schedules"]}
    assert schedules["forecast_aggregates_schedule"]["cronSchedule"] == "*/30 * * * *"
    assert schedules["forecast_snapshot_schedule"]["cronSchedule"] == "10 3 * * *"
    assert schedules["forecast_snapshot_schedule"]["executionTimezone"] == "UTC"
    assert {s["scheduleState"]["status"] for s in schedules.values()} == {"RUNNING"}
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    assert sensors["marts_automation"] == "RUNNING"
