"""One city's refresh end to end: scores, projection, the change report (rendered in
headless Chromium), the refresh-operations record, and the email through a real SMTP
server on 127.0.0.1 (aiosmtpd)."""

import shutil
import subprocess
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

from refresh_assets.settings import PROJECT_DIR
from tests.conftest import free_port
from tests.smtp_fixtures import smtp_server, use_smtp_server

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def inbox(monkeypatch):
    with smtp_server() as (handler, port):
        use_smtp_server(monkeypatch, port, RECIPIENTS="cfo@example.org, council@example.org")
        yield handler


@pytest.fixture
def city_setup(warehouse, dbt_manifest, tmp_path, monkeypatch):
    entries = tmp_path / "entries"
    shutil.copytree(PROJECT_DIR / "entries" / "vallejo", entries / "vallejo")
    monkeypatch.setenv("REFRESH_ENTRIES_DIR", str(entries))
    monkeypatch.setenv("REFRESH_REPORTS_DIR", str(tmp_path / "reports"))
    from refresh_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("cities", ["vallejo"])
        yield defs, instance, entries


def refresh(defs, instance, **resource_overrides):
    job = defs.resolve_job_def("refresh_city")
    return job.execute_in_process(instance=instance, partition_key="vallejo",
                                  tags={"refresh/trigger": "manual"}, raise_on_error=False,
                                  resources=resource_overrides or None)


def operations(address, run_id):
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute("select trigger, previous_overall_points::float, overall_points::float,"
                    " overall_risk, status, report_path, error from ops.refresh_operations"
                    " where run_id = %s", (run_id,))
        return cur.fetchall()


def test_a_refresh_reports_records_and_emails_what_changed(city_setup, inbox, warehouse,
                                                           tmp_path):
    defs, instance, entries = city_setup
    assert refresh(defs, instance).success
    inbox.envelopes.clear()

    path = entries / "vallejo" / "2020.yaml"
    document = yaml.safe_load(path.read_text())
    document["figures"]["gf_unrestricted_fund_balance"] = 100_000_000  # reserves improve
    path.write_text(yaml.safe_dump(document))
    result = refresh(defs, instance)
    assert result.success

    [(trigger, before, after, level, status, report_path, error)] = operations(
        warehouse, result.run_id)
    assert (trigger, status, error) == ("manual", "success", None)
    assert after > before
    html = Path(report_path).read_text()
    assert "What changed: Vallejo, fiscal year 2020" in html
    assert "general fund reserves</td>" in html and 'class="improved">improved' in html
    assert "<svg" in html

    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["cfo@example.org", "council@example.org"]
    message = message_from_bytes(envelope.content, policy=default)
    assert message["Subject"].startswith("What changed: Vallejo FY2020")
    body = message.get_body(preferencelist=("html",)).get_content()
    assert f"{after:.2f}" in body and "Vallejo" in body

    screenshot = tmp_path / "report.png"
    assert CHROMIUM, "Chromium is needed to render the report (.ci/run installs it)"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}",
                    "--window-size=1100,1500", f"--screenshot={screenshot}",
                    f"file://{report_path}"], check=True, capture_output=True, timeout=120)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 50_000  # a rendered page with tables and a chart

    # Nothing changed since: the report is kept, and the materialization still leads to it.
    again = refresh(defs, instance)
    [materialization] = [m for m in again.asset_materializations_for_node("reports__change_report")]
    assert materialization.metadata["reports_written"].value == 0
    assert materialization.metadata["report_path"].value == report_path
    assert f"| Vallejo | `{report_path}` |" in materialization.metadata["reports"].value


def test_a_failed_refresh_is_recorded_with_its_error(city_setup, warehouse):
    from refresh_assets.defs.reports import refresh_failure_sensor
    from refresh_assets.defs.resources import SourceFilesResource

    defs, instance, entries = city_setup
    broken = SourceFilesResource(entries_dir=str(entries), bulk_import_csv="/nonexistent.csv")
    result = refresh(defs, instance, source_files=broken)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_failure_data.error.message.startswith(
        "dagster._core.definitions.events.Failure: /nonexistent.csv: file not found")
    context = dg.build_run_status_sensor_context(
        sensor_name="refresh_failure_sensor", dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={name: defs.resources[name] for name in ("warehouse", "smtp", "slack")},
    ).for_run_failure()
    refresh_failure_sensor(context)
    [(trigger, _, _, _, status, _, error)] = operations(warehouse, result.run_id)
    assert (trigger, status) == ("manual", "failure")
    assert "raw__fiscal_entries" in error


def notifications(address, run_id):
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute("select status, error from ops.notifications where run_id = %s", (run_id,))
        return cur.fetchall()


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("REFRESH_SMTP_PORT", "abc", "REFRESH_SMTP_PORT must be a port number (1-65535), got 'abc'"),
    ("REFRESH_SMTP_PORT", None, "email to 127.0.0.1:"),  # nothing listens there
])
def test_a_failed_email_is_recorded_and_never_fails_the_refresh(city_setup, warehouse, monkeypatch,
                                                                setting, value, expected):
    defs, instance, entries = city_setup
    monkeypatch.setenv("REFRESH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("REFRESH_SMTP_SECURITY", "none")
    monkeypatch.setenv("REFRESH_SMTP_SENDER", "refresh@example.org")
    monkeypatch.setenv("REFRESH_SMTP_RECIPIENTS", "cfo@example.org")
    monkeypatch.setenv(setting, value if value is not None else str(free_port()))
    path = entries / "vallejo" / "2020.yaml"
    document = yaml.safe_load(path.read_text())
    document["figures"]["gf_unrestricted_fund_balance"] = 50_000_000 + len(value or "")
    path.write_text(yaml.safe_dump(document))

    result = refresh(defs, instance)
    assert result.success
    [(_, _, _, _, status, report_path, _)] = operations(warehouse, result.run_id)
    assert status == "success" and Path(report_path).exists()
    [(email_status, error)] = notifications(warehouse, result.run_id)
    assert email_status == "failed"
    assert expected in error
