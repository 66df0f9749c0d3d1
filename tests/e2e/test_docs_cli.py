"""`refresh-assets docs` generates the dbt docs site, with the BI exposures, and serves it
on 127.0.0.1."""

import os
import signal
import subprocess
import time

import pytest
import requests

from tests.conftest import VENV_BIN, free_port

pytestmark = pytest.mark.e2e


def test_docs_site_is_served_on_localhost_with_models_and_exposures(warehouse, dbt_manifest,
                                                                    tmp_path):
    port = free_port()
    log_path = tmp_path / "docs.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([str(VENV_BIN / "refresh-assets"), "docs", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if requests.get(url, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "no docs site within 180 s:\n" + log_path.read_text()
            time.sleep(1)
        manifest = requests.get(f"{url}/manifest.json", timeout=10).json()
        catalog = requests.get(f"{url}/catalog.json", timeout=10).json()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert "fiscal_health_dashboard" in exposures
    assert "model.refresh_assets.forecast_cliff_aggregates" in (
        exposures["fiscal_health_dashboard"]["depends_on"]["nodes"])
    # Both versions of the forecast are documented, with their columns.
    forecast = manifest["nodes"]["model.refresh_assets.city_forecast.v2"]
    assert "fund_balance_low" in forecast["columns"]
    assert "fund_balance_low" not in manifest["nodes"]["model.refresh_assets.city_forecast.v1"][
        "columns"]
    # The catalog was read from the warehouse (the staging views exist once bootstrapped
    # and built; the sources always do).
    assert "source.refresh_assets.analytics.current_projections" in catalog["sources"]
    assert f"http://127.0.0.1:{port}" in log_path.read_text()
