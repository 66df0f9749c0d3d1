"""`refresh-assets check`, `notifications` and `ack` as an operator runs them, against a real
HTTP server on 127.0.0.1 and the test PostgreSQL."""

from __future__ import annotations

import os

import pytest

from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.sources.store import city_documents_to_handle
from tests import http_fixtures
from tests.conftest import run_cli

served_site = http_fixtures.served_site
pytestmark = pytest.mark.e2e

REGISTRY = """
checks:
  user_agent: "refresh-assets tests (+mailto:ops@example.org)"
  retries: 0
  min_interval_seconds: 0
  breaker: {{failures: 5, cooldown_minutes: 60}}
cadence:
  acfr: {{months: [1, 4, 7, 10], day: 15}}
  calpers_valuation: {{months: [7], day: 1}}
hosts: {{127.0.0.1: }}
cities:
  Petaluma:
    finance_pages: [{petaluma}]
  Sonoma:
    finance_pages: [{sonoma}]
"""
PAGE = """<html><body><h1>Finance</h1><ul>
<li>Annual Comprehensive Financial Report FY 2023-24 <a href="/docs/acfr-2024.pdf">Download</a></li>
<li><a href="/docs/pafr-2024.pdf">Popular Annual Financial Report FY 2023-24</a></li>
</ul></body></html>"""


@pytest.fixture
def operator_env(warehouse, served_site, tmp_path):
    registry = tmp_path / "sources.yaml"
    registry.write_text(REGISTRY.format(petaluma=served_site.url("/petaluma/finance"),
                                        sonoma=served_site.url("/sonoma/finance")))
    return {**os.environ, "REFRESH_SOURCES_FILE": str(registry)}


def test_check_prints_each_source_and_what_it_found_and_fails_when_one_failed(
        operator_env, served_site):
    served_site.route("/petaluma/finance", PAGE)
    served_site.route("/sonoma/finance", "down", status=503)
    result = run_cli("check", env=operator_env, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("checking 2 source(s) from ")
    assert any(line.endswith("petaluma/finance: changed: 1 document(s) listed, 1 new") for line in lines)
    assert "new acfr 2024: " in result.stdout and served_site.url("/docs/acfr-2024.pdf") in result.stdout
    assert any("sonoma/finance: FAILED: " in line and "503" in line for line in lines)
    assert lines[-1] == "2 source(s): 1 new document(s), 1 failed; operators are emailed by the " \
                        "source_documents sensor (make ui)"

    only_petaluma = run_cli("check", "--city", "petaluma", env=operator_env)
    assert "[1/1] petaluma/finance: unchanged" in only_petaluma.stdout
    assert only_petaluma.stdout.splitlines()[-1] == "1 source(s): 0 new document(s), 0 failed"


def test_an_open_breaker_is_skipped_with_the_command_that_closes_it(operator_env, served_site):
    served_site.route("/sonoma/finance", "down", status=500)
    for _ in range(5):
        run_cli("check", "--city", "Sonoma", env=operator_env, check=False)
    seen = len(served_site.requests_to("/sonoma/finance"))
    skipped = run_cli("check", "--city", "Sonoma", env=operator_env)
    assert "skipped: breaker open until " in skipped.stdout
    assert "refresh-assets check --reset sonoma/finance" in skipped.stdout
    assert len(served_site.requests_to("/sonoma/finance")) == seen

    assert "sonoma/finance: breaker closed" in run_cli("check", "--reset", "sonoma/finance",
                                                       env=operator_env).stdout
    served_site.route("/sonoma/finance", PAGE.replace("acfr-2024", "sonoma-acfr-2024"))
    assert "sonoma/finance: changed" in run_cli("check", "--city", "Sonoma", env=operator_env).stdout

    unknown = run_cli("check", "--reset", "sonoma/budget", env=operator_env, check=False)
    assert unknown.returncode == 1
    assert "no source 'sonoma/budget'; known: petaluma/finance, sonoma/finance" in unknown.stderr


def test_notifications_are_listed_and_acknowledged(operator_env, served_site, warehouse):
    served_site.route("/petaluma/finance", PAGE)
    run_cli("check", "--city", "Petaluma", env=operator_env)
    with warehouse_connection(warehouse) as conn:
        [notification_id] = city_documents_to_handle(conn, "petaluma")["notification_id"].tolist()

    listed = run_cli("notifications", "--pending", env=operator_env).stdout
    [row] = [line for line in listed.splitlines()[1:-1] if line.split()[0] == str(notification_id)]
    assert row.split()[1:5] == ["pending", "petaluma", "acfr", "2024"]

    acked = run_cli("ack", str(notification_id), "--by", "jane", env=operator_env)
    assert acked.stdout.strip() == f"notification {notification_id} acknowledged by jane"
    again = run_cli("ack", str(notification_id), env=operator_env)
    assert "is acknowledged already; left as it is" in again.stdout
    listed = run_cli("notifications", env=operator_env).stdout
    [row] = [line for line in listed.splitlines()[1:-1] if line.split()[0] == str(notification_id)]
    assert row.split()[1] == "acknowledged"

    missing = run_cli("ack", "987654321", env=operator_env, check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == ("Error: no notification 987654321; "
                                      "`refresh-assets notifications` lists them")
