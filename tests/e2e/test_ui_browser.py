"""The Dagster UI in Chromium, as an operator uses it: the code location loaded, one city
materialized from the launch dialog and its "what changed" report followed from the
materialization, the asset graph with the Python assets, the dbt models and their checks, and
the sensors and schedules running.

The UI runs on an instance and a warehouse of its own, and no city has entry files: a report
is rendered again only when what it shows changed, so a city already refreshed (the main job
refreshes them all earlier in the session, the entries sensor would as soon as the daemon
starts) would end the test's run with a materialization naming no report. Each step leaves a
screenshot in artifacts_dir("ui"); docs/images/asset_graph.png and change_report.png are copies
of the two of those names.
"""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser import chromium_browser
from tests.ui_fixtures import add_city_partition, graphql, own_instance, running_ui, screenshot, ui_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CITY = "vallejo"
RUN_TIMEOUT_MS = 600_000  # a city's refresh is seconds alone; the queue and a busy machine add more

GROUPS = "{ assetNodes { groupName } }"
PYTHON_ASSETS = {  # key: its checks
    "raw/fiscal_entries": ["entry_files_well_formed"],
    "analytics/validated_fiscal_data": ["no_validation_errors", "stored_rows_pass_error_rules"],
    "analytics/risk_scores": [],
    "reports/change_report": [],
}
DBT_MODELS = {  # key: dbt tests among its checks
    "marts/city_fiscal_years": ["unique_city_fiscal_years_city_fiscal_year_id"],
    "marts/city_forecast": [],
    "marts/refresh_status": [],
}


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui_browser")
    with own_instance(home) as env, running_ui(home / "ui.log", env=env) as url:
        add_city_partition(url, CITY)
        yield url, Path(env["REFRESH_REPORTS_DIR"])


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as browser:
        yield browser


@pytest.fixture
def page(browser):
    with ui_page(browser) as page:
        yield page


def test_the_code_location_is_loaded_without_errors(ui, page):
    url, _ = ui
    page.goto(f"{url}/locations")
    expect(page.get_by_role("link", name="refresh_assets").first).to_be_visible()
    expect(page.get_by_text("Loaded", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
    expect(page.get_by_text("failed to load")).to_have_count(0)
    screenshot(page, "01_code_location")
    # No first-visit dialog comes up over the operators' own (dagster.yaml, nux).
    assert graphql(url, "{ shouldShowNux }") == {"shouldShowNux": False}


def test_a_city_launched_from_the_ui_succeeds_and_its_report_is_reached(ui, page):
    url, reports_dir = ui
    page.goto(f"{url}/locations/refresh_assets/jobs/refresh_city")
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    dialog.get_by_text("Select a partition").click()
    page.get_by_role("textbox", name="Filter partitions").fill(CITY)
    page.get_by_role("menuitem", name=CITY).click()
    page.keyboard.press("Escape")  # closes the partition list, not the dialog
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    screenshot(page, "02_launch_dialog")
    dialog.get_by_role("button", name="Launch 1 run").click()

    page.get_by_role("region", name="Notifications").get_by_role("link", name="View").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_text(f"partition: {CITY}")).to_be_visible()
    outcome = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(outcome).to_be_visible(timeout=RUN_TIMEOUT_MS)
    screenshot(page, "03_run")
    assert outcome.inner_text() == "Success", f"run {run_id}: see 03_run.png"

    # The asset's latest materialization is this run's, and names the report it wrote.
    page.goto(f"{url}/assets/reports/change_report?view=events")
    expect(page.get_by_role("link", name=run_id[:8])).to_be_visible()
    report_path = page.get_by_role("row", name=re.compile(r"^report_path ")).get_by_role("cell").nth(1)
    expect(report_path).to_contain_text(str(reports_dir / CITY))
    screenshot(page, "04_report_materialization")
    report = Path(report_path.inner_text().strip())
    assert report == reports_dir / CITY / f"{run_id}.html"

    page.goto(report.as_uri())
    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(r"^What changed: Vallejo, fiscal year \d{4}$"))
    expect(page.get_by_role("cell", name="general fund reserves")).to_be_visible()
    screenshot(page, "change_report", full_page=True)


def jump_to(page, key: str) -> None:
    """Selects an asset of the graph as a user does: its key in "Jump to…", then the match."""
    name = key.rsplit("/", 1)[1]
    page.get_by_placeholder("Jump to…").fill(key)
    # A name shared by assets of two prefixes is followed by the prefix.
    page.get_by_role("menuitem", name=re.compile(rf"^{name}(\s|$)")).click()
    expect(page.get_by_role("heading", name=key.replace("/", " / "), exact=True)).to_be_visible()


def test_the_asset_graph_shows_the_python_assets_and_dbt_models_with_their_checks(ui, page):
    url, _ = ui
    page.goto(f"{url}/asset-groups")
    for key, checks in PYTHON_ASSETS.items():
        jump_to(page, key)
        expect(page.get_by_text('Dynamic partitions: "cities"')).to_be_visible()  # city by city
        for check in checks:
            expect(page.get_by_role("link", name=check)).to_be_visible()
    screenshot(page, "05_graph_python_asset")
    for key, checks in DBT_MODELS.items():
        jump_to(page, key)
        expect(page.get_by_text("Raw SQL")).to_be_visible()  # the model's code, from dbt
        expect(page.get_by_role("link", name="View all check details")).to_be_visible()
        for check in checks:
            expect(page.get_by_role("link", name=check)).to_be_visible()
    screenshot(page, "06_graph_dbt_model")
    save_graph_overview(page.context.browser, url)


def save_graph_overview(browser, url: str) -> None:
    """asset_graph.png, for the README: the whole graph, readable at 1400 px, with the dbt
    plumbing (staging, intermediate) folded and everything else unfolded."""
    groups = {n["groupName"] for n in graphql(url, GROUPS)["assetNodes"]} - {"staging", "intermediate"}
    # `expanded` is the URL the UI itself writes when groups are unfolded.
    expanded = ",".join(f"global@global:{group}" for group in sorted(groups))
    with ui_page(browser, width=1400, height=1300) as page:
        page.goto(f"{url}/asset-groups?expanded={expanded}")
        page.get_by_role("button", name="Hide navigation").click()
        # The sidebar's hide button, whose only name is its icon's.
        page.get_by_role("button", name="panel_show_right", exact=True).click()
        graph = page.locator("svg").filter(has=page.locator("foreignObject")).first
        expect(graph).to_be_visible()
        # Each asset's status colours its node; they come in batches after the graph is drawn.
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(5000)
        page.mouse.dblclick(80, 140)  # on the background, top left: fit the graph to the page
        page.wait_for_timeout(1000)  # the fit is animated
        screenshot(page, "asset_graph")


def test_an_assets_checks_tab_lists_its_checks(ui, page):
    url, _ = ui
    for key, checks in [("analytics/validated_fiscal_data", PYTHON_ASSETS["analytics/validated_fiscal_data"]),
                        ("marts/city_fiscal_years", DBT_MODELS["marts/city_fiscal_years"])]:
        page.goto(f"{url}/assets/{key}?view=checks")
        for check in checks:
            # Long names are shortened in the middle; the full name is the title.
            expect(page.get_by_title(check, exact=True).first).to_be_visible()
        screenshot(page, f"07_checks_{key.replace('/', '_')}")


def test_sensors_and_schedules_are_listed_running(ui, page):
    url, _ = ui
    page.goto(f"{url}/automation")
    for name in ("entry_files_sensor", "source_documents_sensor", "marts_automation",
                 "forecast_aggregates_schedule", "forecast_snapshot_schedule"):
        link = page.get_by_role("link", name=re.compile(rf"\b{name}\b"))
        # The row: the innermost block with the name and the checkboxes (select, and the
        # on/off switch last).
        row = page.locator("div").filter(has=link).filter(has=page.get_by_role("checkbox")).last
        expect(row.get_by_role("checkbox").last).to_be_checked()
    screenshot(page, "08_automation")
