"""`make bi` after `make demo`: `refresh-assets bi superset` installs Superset in its own
virtual environment under REFRESH_HOME, provisions the dashboard of bi/superset/ reading
the marts as bi_reader, and serves it; in Chromium, after the real login form, every chart
of the dashboard renders rows of the warehouse. A second start re-imports the dashboard
over an edit made in Superset. Minutes of set-up (the pip install of Superset)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from refresh_assets.lib.superset import ADMIN_USER, BUNDLE_DIR, dashboard_url
from tests.browser import artifacts_dir, chromium_browser
from tests.conftest import VENV_BIN, free_port, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.browser]

# The first start installs Superset (pip, 2-10 minutes on a busy 2-core machine).
FIRST_START_S = 1800
START_S = 600
CHART_S = 180
DASHBOARD = yaml.safe_load((BUNDLE_DIR / "dashboards" / "fiscal_health.yaml").read_text())
CHART_NAMES = [item["meta"]["sliceName"] for item in DASHBOARD["position"].values()
               if isinstance(item, dict) and item["type"] == "CHART"]
TABLE_CHART = "Statewide projection, base scenario"
CITY_CHART = "One city's revenues and expenditures, forecast band"
# Painted pixels of a canvas: more than axes and labels alone once the series are drawn.
PAINTED = """canvas => {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted += 1;
  return painted / (canvas.width * canvas.height);
}"""


class Superset:
    """`refresh-assets bi superset` in its own process group, its output in a file."""

    def __init__(self, port: int, log_path: Path):
        self.port, self.log_path = port, log_path
        env = {k: v for k, v in os.environ.items()
               if k not in ("REFRESH_BI_PASSWORD", "SUPERSET_ADMIN_PASSWORD")}
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "refresh-assets"), "bi", "superset", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_until_serving(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, "bi superset exited:\n" + self.log()[-6000:]
            try:
                if requests.get(f"{self.url}/health", timeout=5).text == "OK":
                    return
            # Not listening yet, or listening while its worker still loads the app.
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.monotonic() < deadline, (f"Superset did not serve within {timeout_s} s:\n"
                                                 + self.log()[-6000:])
            time.sleep(3)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)  # gunicorn stops its worker
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def demo_data(warehouse, dbt_manifest):
    """The warehouse as `make demo` leaves it: every city refreshed, the marts built."""
    run_cli("materialize", timeout=1800)
    return warehouse


def log_in(page, superset: Superset, password: str) -> None:
    page.goto(f"{superset.url}/login/")
    page.get_by_label("Username").fill(ADMIN_USER)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url, timeout=CHART_S * 1000)


def chart(page, name: str):
    return page.locator(f'[data-test="chart-grid-component"][data-test-chart-name="{name}"]')


def assert_every_chart_rendered_data(page, superset: Superset) -> None:
    """Loads the dashboard; each chart's query returns rows and the chart draws them."""
    rows: dict[int, int] = {}  # by chart id

    def on_response(response):
        if "/api/v1/chart/data" in response.url and response.request.method == "POST":
            slice_id = (response.request.post_data_json or {}).get("form_data", {}).get("slice_id")
            if slice_id is not None and response.ok:
                rows[slice_id] = sum(r.get("rowcount", 0) for r in response.json()["result"])

    page.on("response", on_response)
    page.goto(dashboard_url(superset.port))
    for name in CHART_NAMES:
        holder = chart(page, name)
        holder.wait_for(timeout=CHART_S * 1000)
        drawn = holder.locator('[data-test="chart-container"] canvas, '
                               '[data-test="chart-container"] table tbody tr')
        # Drawn, or Superset's empty or error state: whichever comes first, then judged.
        drawn.or_(holder.get_by_text("No results")).or_(holder.get_by_role("alert")).first.wait_for(
            timeout=CHART_S * 1000)
        text = holder.inner_text()
        assert "no results" not in text.lower() and "error" not in text.lower(), (
            f"{name}: {text[:500]}")
        if name == TABLE_CHART:
            assert holder.locator("table tbody tr").count() >= 10, name
            assert "2030" in text, name
        else:
            canvas = holder.locator("canvas").first
            deadline = time.monotonic() + 30  # ECharts animates the series in
            while canvas.evaluate(PAINTED) < 0.03:
                assert time.monotonic() < deadline, f"{name}: its canvas stays (nearly) blank"
                time.sleep(1)
    page.remove_listener("response", on_response)
    ids = {int(chart(page, n).get_attribute("data-test-chart-id")): n for n in CHART_NAMES}
    returned = {name: rows.get(chart_id, 0) for chart_id, name in ids.items()}
    assert all(returned.values()), f"rows per chart: {returned}"


def test_make_bi_serves_the_dashboard_with_data_and_a_restart_reimports_it(demo_data, test_settings,
                                                                           tmp_path):
    home = test_settings.home / "superset"
    superset = Superset(free_port(), tmp_path / "superset-1.log")
    try:
        superset.wait_until_serving(FIRST_START_S)
        first_log = superset.log()
        admin_file, bi_file = home / "admin.password", home / "bi_reader.password"
        # Generated once, readable by their owner only, named but never shown.
        for secret in (admin_file, bi_file, home / "secret_key"):
            assert secret.stat().st_mode & 0o777 == 0o600, secret
            assert secret.read_text().strip() not in first_log + (home / "provision.log").read_text()
        assert str(admin_file) in first_log and dashboard_url(superset.port) in first_log
        assert "packages installed" in first_log and "Traceback" not in first_log
        password = admin_file.read_text().strip()
        assert len(DASHBOARD["metadata"]["native_filter_configuration"]) == 1
        assert len(CHART_NAMES) == len(list((BUNDLE_DIR / "charts").glob("*.yaml"))) == 5

        with chromium_browser() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            log_in(page, superset, password)
            assert_every_chart_rendered_data(page, superset)
            # The city chart is filtered by the native filter's default city.
            assert "Vallejo" in page.locator('[data-test="filter-bar"]').inner_text()
            assert chart(page, CITY_CHART).get_by_label("Applied filters (1)").count() == 1
            # An edit made in Superset (a chart renamed), to be overwritten by the next start.
            city_chart_id = chart(page, CITY_CHART).get_attribute("data-test-chart-id")
            csrf = page.request.get(f"{superset.url}/api/v1/security/csrf_token/").json()["result"]
            renamed = page.request.put(f"{superset.url}/api/v1/chart/{city_chart_id}",
                                       data={"slice_name": "Edited in the UI"},
                                       headers={"X-CSRFToken": csrf, "Referer": superset.url})
            assert renamed.ok, renamed.text()
            page.close()

        # Port taken: one line saying what to do, nothing started.
        busy = run_cli("bi", "superset", "--port", str(superset.port), check=False)
        assert busy.returncode == 1 and "Traceback" not in busy.stderr
        assert f"port {superset.port} on 127.0.0.1 is in use" in busy.stderr
    finally:
        superset.stop()

    superset = Superset(free_port(), tmp_path / "superset-2.log")
    try:
        superset.wait_until_serving(START_S)
        assert "installed already" in superset.log()
        with chromium_browser() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            log_in(page, superset, password)
            api = f"{superset.url}/api/v1/dashboard/{DASHBOARD['slug']}/charts"
            names = sorted(c["slice_name"] for c in page.request.get(api).json()["result"])
            assert names == sorted(CHART_NAMES)  # the rename undone, nothing imported twice
            assert_every_chart_rendered_data(page, superset)
            page.screenshot(path=artifacts_dir("superset") / "dashboard.png", full_page=True)
    finally:
        superset.stop()
