"""Viewer access (docs/ACCESS.md): beside the operators' UI (`refresh-assets ui`), the viewers'
(`refresh-assets ui --viewer`) shows the same instance and refuses every launch, through its
GraphQL API as through its pages."""

import time

import pytest
import requests
from playwright.sync_api import expect

from tests.browser import chromium_browser
from tests.ui_fixtures import REPOSITORY, graphql, running_ui, screenshot, ui_page

pytestmark = pytest.mark.e2e

LAUNCH_RUN = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }
"""
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }
"""
TERMINATE = """
mutation($runId: String!) { terminateRun(runId: $runId) {
  __typename ... on TerminateRunFailure { message } ... on Error { message } } }
"""
RUN_STATUS = "query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"
# The smallest job (no partition to choose): the aggregates' refresh.
AGGREGATES_RUN = {"selector": {**REPOSITORY, "jobName": "refresh_forecast_aggregates"}}
UNAUTHORIZED = {"__typename": "UnauthorizedError", "message": "Authorization failed"}


@pytest.fixture(scope="module")
def operator_url(warehouse, dbt_manifest, tmp_path_factory):
    with running_ui(tmp_path_factory.mktemp("operator_ui") / "ui.log") as url:
        yield url


@pytest.fixture(scope="module")
def viewer_url(operator_url, tmp_path_factory):
    with running_ui(tmp_path_factory.mktemp("viewer_ui") / "ui.log", "--viewer") as url:
        yield url


def test_the_viewer_refuses_runs_backfills_and_reported_events(viewer_url):
    assert graphql(viewer_url, LAUNCH_RUN, params=AGGREGATES_RUN)["launchRun"] == UNAUTHORIZED
    backfill = {"assetSelection": [{"path": ["reports", "change_report"]}],
                "partitionNames": ["vallejo"]}
    assert graphql(viewer_url, LAUNCH_BACKFILL, params=backfill)[
        "launchPartitionBackfill"] == UNAUTHORIZED
    # Outside GraphQL too: an asset event reported over HTTP (/report_asset_*) is refused.
    reported = requests.post(f"{viewer_url}/report_asset_materialization/reports/change_report",
                             timeout=60)
    assert reported.status_code == 401, reported.text


def test_operators_launch_and_terminate_a_run_the_viewer_cannot_terminate(operator_url, viewer_url):
    launched = graphql(operator_url, LAUNCH_RUN, params=AGGREGATES_RUN)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert graphql(viewer_url, TERMINATE, runId=run_id)["terminateRun"] == {
        "__typename": "TerminateRunFailure",
        "message": "You do not have permission to terminate this run"}
    assert graphql(operator_url, TERMINATE, runId=run_id)["terminateRun"] == {
        "__typename": "TerminateRunSuccess"}
    deadline = time.monotonic() + 120  # a run already dequeued is stopped by its process
    while (status := graphql(operator_url, RUN_STATUS, runId=run_id)["runOrError"]["status"]
           ) != "CANCELED" and time.monotonic() < deadline:
        time.sleep(1)
    assert status == "CANCELED"


@pytest.mark.browser
def test_the_viewer_shows_the_asset_graph_and_no_enabled_materialize_button(viewer_url):
    with chromium_browser() as browser, ui_page(browser) as page:
        page.goto(f"{viewer_url}/asset-groups")
        graph = page.locator("svg").filter(has=page.locator("foreignObject")).first
        for group in ("ingestion", "validation", "marts"):
            expect(graph.get_by_text(group, exact=True)).to_be_visible()
        materialize = page.get_by_role("button", name="Materialize")
        expect(materialize).to_have_count(1)  # "Materialize all…"
        expect(materialize).to_be_disabled()
        materialize.hover(force=True)  # a disabled button says why on hover
        expect(page.get_by_text("You do not have permission to materialize assets")).to_be_visible()
        screenshot(page, "viewer_asset_graph")

        page.goto(f"{viewer_url}/assets/reports/change_report")
        expect(page.get_by_role("listitem").filter(has_text="change_report")).to_be_visible()
        expect(page.get_by_role("button", name="Materialize")).to_be_disabled()
        screenshot(page, "viewer_asset")
