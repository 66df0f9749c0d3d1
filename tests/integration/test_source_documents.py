"""Source checks, the source sensor and the `source_documents` asset, against a real HTTP
server on 127.0.0.1, the test PostgreSQL and a real SMTP server (aiosmtpd).

Each test uses its own city, so the rows one leaves in the session's database do not
touch another's."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.fiscal_inputs import bulk_rows_as_versions, read_fiscal_inputs_csv
from refresh_assets.lib.fiscal_store import append_entry_versions
from refresh_assets.lib.sources.checking import check_sources
from refresh_assets.lib.sources.registry import load_registry
from refresh_assets.lib.sources.store import city_documents_to_handle, claim_email
from refresh_assets.settings import DATA_DIR, PROJECT_DIR
from tests import http_fixtures
from tests.smtp_fixtures import smtp_server, use_smtp_server

served_site = http_fixtures.served_site
pytestmark = pytest.mark.integration

REGISTRY = """
checks:
  user_agent: "refresh-assets tests (+mailto:ops@example.org)"
  poll_every_minutes: 0
  retries: 0
  backoff_seconds: 0
  min_interval_seconds: 0
  read_timeout_seconds: 2
  breaker: {{failures: 5, cooldown_minutes: 60}}
cadence:
  acfr: {{months: [1, 4, 7, 10], day: 15}}
  calpers_valuation: {{months: [7], day: 1}}
hosts: {{127.0.0.1: }}
cities:
{cities}
"""


def finance_page(*links: tuple[str, str]) -> str:
    rows = "".join(f'<tr><td>{title}</td><td><a href="{href}">Download</a></td></tr>'
                   for title, href in links)
    return (f"<html><head><title>Finance</title></head><body><h1>Finance Department</h1>"
            f"<h2>Financial Reports</h2><table>{rows}</table>"
            f'<p><a href="/docs/budget-2024.pdf">Adopted Budget FY 2023-24</a></p></body></html>')


def registry_for(tmp_path, site, pages: dict[str, str]):
    cities = "\n".join(f"  {city}:\n    finance_pages: [{site.url(path)}]" for city, path in pages.items())
    path = tmp_path / "sources.yaml"
    path.write_text(REGISTRY.format(cities=cities))
    return load_registry(path)


def ingest_published_rows(address, city: str) -> None:
    """The city's rows of the published data set in raw.fiscal_entries, as a refresh leaves them."""
    published = read_fiscal_inputs_csv(DATA_DIR / "ca_city_fiscal_inputs.csv")
    with warehouse_connection(address) as conn:
        append_entry_versions(conn, bulk_rows_as_versions(published[published["city"] == city],
                                                          "ca_city_fiscal_inputs.csv"))


def rows(address, query, *params):
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def test_a_page_is_parsed_once_then_costs_a_304_and_only_unentered_years_are_new(
        warehouse, served_site, tmp_path):
    served_site.route("/benicia/finance", finance_page(
        ("Annual Comprehensive Financial Report FY 2022-23", "/docs/acfr-2023.pdf"),
        ("Annual Comprehensive Financial Report FY 2021-22", "/docs/acfr-2022.pdf"),
        ("Comprehensive Annual Financial Report FY 2017-18", "/docs/cafr-2018.pdf"),
        ("Comprehensive Annual Financial Report FY 2014-15", "/docs/cafr-2015.pdf")),
        headers={"ETag": '"v1"'})
    registry = registry_for(tmp_path, served_site, {"Benicia": "/benicia/finance"})
    ingest_published_rows(warehouse, "Benicia")

    [first] = check_sources(warehouse, registry, registry.sources)
    assert first.outcome == "changed" and first.documents_found == 4
    # 2018 is in the published data set already; 2015 is older than the data (2017).
    assert sorted(d["fiscal_year"] for d in first.new_documents) == [2022, 2023]
    statuses = dict(rows(warehouse, "select fiscal_year, status from ops.source_documents "
                                    "where city_key = 'benicia'"))
    assert statuses == {2023: "new", 2022: "new", 2018: "already_entered", 2015: "out_of_scope"}

    [second] = check_sources(warehouse, registry, registry.sources)
    assert (second.outcome, second.new_documents) == ("not_modified", [])
    assert second.bytes == 0
    assert served_site.requests_to("/benicia/finance")[-1].headers["if-none-match"] == '"v1"'
    [(count,)] = rows(warehouse, "select count(*) from ops.source_documents where city_key = 'benicia'")
    assert count == 4

    # Not due: polled again within its interval, nothing is requested.
    requests_before = len(served_site.requests_to("/benicia/finance"))
    slow = replace(registry, checks=registry.checks.model_copy(update={"poll_every_minutes": 600}))
    [third] = check_sources(warehouse, slow, slow.sources)
    assert third.outcome == "not_due"
    assert len(served_site.requests_to("/benicia/finance")) == requests_before


def test_the_same_content_without_validators_is_unchanged_and_a_new_link_is_new(
        warehouse, served_site, tmp_path):
    page = finance_page(("ACFR FY 2021-22", "/docs/a-2022.pdf"))
    served_site.route("/napa/finance", page)
    registry = registry_for(tmp_path, served_site, {"Napa": "/napa/finance"})
    assert check_sources(warehouse, registry, registry.sources)[0].outcome == "changed"
    assert check_sources(warehouse, registry, registry.sources)[0].outcome == "unchanged"
    served_site.route("/napa/finance", finance_page(("ACFR FY 2022-23", "/docs/a-2023.pdf"),
                                                    ("ACFR FY 2021-22", "/docs/a-2022.pdf")))
    [result] = check_sources(warehouse, registry, registry.sources)
    assert result.outcome == "changed"
    assert [(d["fiscal_year"], d["url"]) for d in result.new_documents] == [
        (2023, served_site.url("/docs/a-2023.pdf"))]


def test_the_breaker_opens_after_five_failures_and_closes_after_a_success(
        warehouse, served_site, tmp_path):
    served_site.route("/fairfield/finance", "down", status=500)
    served_site.route("/dixon/finance", finance_page(("ACFR FY 2022-23", "/docs/d-2023.pdf")))
    registry = registry_for(tmp_path, served_site,
                            {"Fairfield": "/fairfield/finance", "Dixon": "/dixon/finance"})
    fairfield = registry.source("fairfield/finance")

    for attempt in range(1, 6):
        outcomes = {r.source.source_id: r for r in check_sources(warehouse, registry, registry.sources)}
        failed = outcomes["fairfield/finance"]
        assert failed.outcome == "failed" and "500" in failed.error
        assert failed.breaker.state == ("open" if attempt == 5 else "closed")
        # One source's failure never stops the others.
        assert outcomes["dixon/finance"].outcome in ("changed", "unchanged", "not_modified")
    requests_made = len(served_site.requests_to("/fairfield/finance"))

    [skipped] = check_sources(warehouse, registry, [fairfield])
    assert skipped.outcome == "breaker_open"
    assert len(served_site.requests_to("/fairfield/finance")) == requests_made
    checks = rows(warehouse, "select outcome, http_status, error_kind from ops.refresh_checks "
                             "where source_id = 'fairfield/finance'")
    assert checks == [("failed", 500, "http_status")] * 5

    served_site.route("/fairfield/finance", finance_page(("ACFR FY 2022-23", "/docs/f-2023.pdf")))
    after_cooldown = datetime.now(UTC) + timedelta(minutes=61)
    [trial] = check_sources(warehouse, registry, [fairfield], now=after_cooldown)
    assert trial.outcome == "changed" and trial.breaker.state == "closed"
    [(state, failures)] = rows(warehouse, "select breaker_state, consecutive_failures from "
                                          "ops.source_state where source_id = 'fairfield/finance'")
    assert (state, failures) == ("closed", 0)


def test_a_failed_trial_reopens_the_breaker_for_twice_as_long(warehouse, served_site, tmp_path):
    served_site.route("/suisun-city/finance", "down", status=503)
    registry = registry_for(tmp_path, served_site, {"Suisun City": "/suisun-city/finance"})
    for _ in range(5):
        check_sources(warehouse, registry, registry.sources)
    later = datetime.now(UTC) + timedelta(minutes=61)
    [trial] = check_sources(warehouse, registry, registry.sources, now=later)
    assert trial.breaker.state == "open"
    assert trial.breaker.open_until - datetime.now(UTC) > timedelta(minutes=115)


@pytest.fixture
def inbox(monkeypatch):
    with smtp_server() as (handler, port):
        use_smtp_server(monkeypatch, port)
        yield handler


class SourceSensor:
    """Ticks the real sensor as the daemon does, keeping its cursor."""

    def __init__(self, instance, registry_path, documents_dir, address):
        from refresh_assets.defs.resources import SourceRegistryResource, WarehouseResource
        from refresh_assets.defs.sources import source_documents_sensor

        # The other tests' documents are dispatched already, as far as this sensor knows.
        [(last,)] = rows(address, "select coalesce(max(document_id), 0) from ops.source_documents")
        self.sensor, self.instance = source_documents_sensor, instance
        self.cursor = json.dumps({"dispatched_through": last})
        self.resources = {
            "warehouse": WarehouseResource(host=address.host, port=address.port, user=address.user,
                                           password=address.password or "",
                                           database=address.warehouse_db),
            "source_registry": SourceRegistryResource(sources_file=str(registry_path),
                                                      documents_dir=str(documents_dir)),
        }

    def tick(self, cursor: str | None = None) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, resources=self.resources,
                                          cursor=self.cursor if cursor is None else cursor)
        result = self.sensor(context)
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = result.cursor
        return result


def test_a_new_link_is_recorded_once_emailed_once_and_completed_when_its_entry_validates(
        warehouse, dbt_manifest, served_site, inbox, tmp_path, monkeypatch):
    entries = tmp_path / "entries"
    entries.mkdir()
    monkeypatch.setenv("REFRESH_ENTRIES_DIR", str(entries))
    monkeypatch.setenv("REFRESH_REPORTS_DIR", str(tmp_path / "reports"))
    served_site.route("/vacaville/finance", finance_page(("ACFR FY 2019-20", "/docs/v-2020.pdf")),
                      headers={"ETag": '"a"'})
    registry = registry_for(tmp_path, served_site, {"Vacaville": "/vacaville/finance"})
    monkeypatch.setenv("REFRESH_SOURCES_FILE", str(registry.path))
    ingest_published_rows(warehouse, "Vacaville")
    from refresh_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        sensor = SourceSensor(instance, registry.path, tmp_path / "documents", warehouse)
        first = sensor.tick()
        assert first.run_requests == []  # 2020 is in the published data: nothing to enter
        assert "vacaville" in instance.get_dynamic_partitions("cities")

        served_site.route("/vacaville/finance", finance_page(
            ("Annual Comprehensive Financial Report FY 2022-23", "/docs/v-2023.pdf"),
            ("ACFR FY 2019-20", "/docs/v-2020.pdf")), headers={"ETag": '"b"'})
        cursor_before = sensor.cursor
        second = sensor.tick()
        [request] = second.run_requests
        assert request.partition_key == "vacaville"
        # A daemon that died before storing this tick's cursor asks again with the same run
        # key (Dagster launches a run key once); with the cursor stored, nothing is asked.
        assert [r.run_key for r in sensor.tick(cursor=cursor_before).run_requests] == [request.run_key]
        sensor.cursor = second.cursor
        assert sensor.tick().run_requests == []

        job = defs.resolve_job_def("source_documents")
        for _ in range(2):  # the second run finds the email sent and sends nothing
            run = job.execute_in_process(instance=instance, partition_key="vacaville",
                                         raise_on_error=False)
            assert run.success
        [message] = inbox.messages()
        assert inbox.envelopes[0].rcpt_tos == ["ops@example.org"]
        assert message["Subject"] == "New ACFR to enter: Vacaville, fiscal year 2023"
        html = message.get_body(preferencelist=("html",)).get_content()
        assert served_site.url("/docs/v-2023.pdf") in html and "60–120 minutes" in html
        assert ("refresh-assets enter --city Vacaville --fiscal-year 2023 --document "
                + served_site.url("/docs/v-2023.pdf")) in html
        [(notification_id, status, email_status)] = rows(
            warehouse, "select notification_id, status, email_status from ops.refresh_notifications "
                       "where city_key = 'vacaville'")
        assert (status, email_status) == ("pending", "sent")

        # The operator enters the report; its city's refresh validates it and completes it.
        shutil.copy(PROJECT_DIR / "entries" / "vallejo" / "2020.yaml", tmp_path / "model.yaml")
        entry = yaml.safe_load((tmp_path / "model.yaml").read_text())
        entry.update(city="Vacaville", fiscal_year=2023,
                     source={"title": "City of Vacaville ACFR FY 2022-23",
                             "url": served_site.url("/docs/v-2023.pdf")})
        (entries / "vacaville").mkdir()
        (entries / "vacaville" / "2023.yaml").write_text(yaml.safe_dump(entry))
        refresh = defs.resolve_job_def("refresh_city").execute_in_process(
            instance=instance, partition_key="vacaville", raise_on_error=False)
        assert refresh.success
        [(status, run_id)] = rows(warehouse, "select status, completed_by_run from "
                                             "ops.refresh_notifications where notification_id = %s",
                                  notification_id)
        assert (status, run_id) == ("completed", refresh.run_id)


def test_changed_markup_with_the_same_links_is_parsed_and_finds_nothing_new(
        warehouse, served_site, tmp_path):
    served_site.route("/lodi/finance", finance_page(("ACFR FY 2022-23", "/docs/l-2023.pdf")))
    registry = registry_for(tmp_path, served_site, {"Lodi": "/lodi/finance"})
    assert len(check_sources(warehouse, registry, registry.sources)[0].new_documents) == 1
    served_site.route("/lodi/finance", '<html><body><div class="docs"><h3>Annual Comprehensive '
                                       'Financial Reports</h3><ul><li><a href="/docs/l-2023.pdf">'
                                       'FY 2022-23</a></li></ul></div></body></html>')
    [result] = check_sources(warehouse, registry, registry.sources)
    assert (result.outcome, result.documents_found, result.new_documents) == ("changed", 1, [])


def test_downloads_are_stored_by_checksum_from_allowed_hosts_only(
        warehouse, dbt_manifest, served_site, tmp_path, monkeypatch):
    pdf = b"%PDF-1.7\n" + b"x" * 5000
    served_site.route("/docs/m-2024.pdf", pdf, content_type="application/pdf")
    served_site.route("/docs/m-2023.pdf", "<html>not a pdf</html>")
    served_site.route("/madera/finance", finance_page(
        ("ACFR FY 2023-24", "/docs/m-2024.pdf"), ("ACFR FY 2022-23", "/docs/m-2023.pdf"),
        ("ACFR FY 2021-22", served_site.url("/docs/m-2022.pdf", host="localhost"))))
    registry = registry_for(tmp_path, served_site, {"Madera": "/madera/finance"})
    registry.path.write_text(registry.path.read_text().replace(
        "  breaker:", "  downloads: {enabled: true, max_megabytes: 1}\n  breaker:"))
    monkeypatch.setenv("REFRESH_SOURCES_FILE", str(registry.path))
    monkeypatch.setenv("REFRESH_DOCUMENTS_DIR", str(tmp_path / "documents"))
    monkeypatch.setenv("REFRESH_SMTP_HOST", "")
    assert len(check_sources(warehouse, load_registry(registry.path), registry.sources)[0]
               .new_documents) == 3
    from refresh_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("cities", ["madera"])
        run = defs.resolve_job_def("source_documents").execute_in_process(
            instance=instance, partition_key="madera", raise_on_error=False)
    assert run.success
    downloads = {year: (status, sha, path, error) for year, status, sha, path, error in rows(
        warehouse, "select fiscal_year, download_status, download_sha256, download_path, download_error "
                   "from ops.source_documents where city_key = 'madera'")}
    status, sha, path, _ = downloads[2024]
    assert status == "stored"
    assert sha == hashlib.sha256(pdf).hexdigest()
    assert path == str(tmp_path / "documents" / "sha256" / sha[:2] / f"{sha}.pdf")
    assert Path(path).read_bytes() == pdf
    assert downloads[2023][0] == "failed" and "content" in downloads[2023][3].lower()
    assert downloads[2022][0] == "not_allowed"
    assert served_site.requests_to("/docs/m-2022.pdf") == []  # the other host was never contacted
    emails = rows(warehouse, "select email_status from ops.refresh_notifications where city_key = 'madera'")
    assert emails == [("off",)] * 3  # email is off unless configured


def test_the_sensor_shows_a_failing_source_and_its_reliability_in_the_ui(
        warehouse, served_site, tmp_path):
    served_site.route("/merced/finance", finance_page(("ACFR FY 2022-23", "/docs/me-2023.pdf")))
    registry = registry_for(tmp_path, served_site, {"Merced": "/merced/finance"})
    with dg.DagsterInstance.get() as instance:
        sensor = SourceSensor(instance, registry.path, tmp_path / "documents", warehouse)
        sensor.tick()  # adds the city's partition
        served_site.route("/merced/finance", "down", status=502)
        for _ in range(3):
            result = sensor.tick()
    [observation] = [e for e in result.asset_events if e.partition == "merced"]
    metadata = observation.metadata
    assert metadata["sources_failing"].value == "merced/finance"
    assert metadata["lowest_reliability"].value == pytest.approx(1 / 4, abs=0.001)
    table = metadata["sources"].value
    assert "merced/finance" in table and "502" in table and "closed" in table


def test_an_email_claimed_by_a_run_that_died_is_never_sent_again(
        warehouse, dbt_manifest, served_site, inbox, tmp_path, monkeypatch):
    served_site.route("/turlock/finance", finance_page(("ACFR FY 2023-24", "/docs/t-2024.pdf"),
                                                       ("ACFR FY 2022-23", "/docs/t-2023.pdf")))
    registry = registry_for(tmp_path, served_site, {"Turlock": "/turlock/finance"})
    monkeypatch.setenv("REFRESH_SOURCES_FILE", str(registry.path))
    check_sources(warehouse, registry, registry.sources)
    with warehouse_connection(warehouse) as conn:
        documents = city_documents_to_handle(conn, "turlock")
        died_while_sending = int(documents.loc[documents["fiscal_year"] == 2024, "notification_id"].iloc[0])
        assert claim_email(conn, died_while_sending)  # then the process died: no email, no record
    from refresh_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("cities", ["turlock"])
        assert defs.resolve_job_def("source_documents").execute_in_process(
            instance=instance, partition_key="turlock", raise_on_error=False).success
    assert [m["Subject"] for m in inbox.messages()] == [
        "New ACFR to enter: Turlock, fiscal year 2023"]
    assert dict(rows(warehouse, "select fiscal_year, email_status from ops.refresh_notifications "
                                "where city_key = 'turlock'")) == {2024: "sending", 2023: "sent"}


def test_a_tick_past_its_budget_defers_the_rest_and_they_go_first_next_time(
        warehouse, served_site, tmp_path):
    pages = {city: f"/{city.lower()}/finance" for city in ("Manteca", "Tracy", "Lathrop")}
    for path in pages.values():
        served_site.replies(path, [http_fixtures.Reply(
            body=finance_page().encode(), headers={"Content-Type": "text/html"}, delay=0.4)])
    registry = registry_for(tmp_path, served_site, pages)
    registry = replace(registry, checks=registry.checks.model_copy(update={"tick_budget_seconds": 0.2}))

    first = {r.source.source_id: r.outcome for r in check_sources(warehouse, registry, registry.sources)}
    assert sorted(first.values()) == ["changed", "deferred", "deferred"]
    second = {r.source.source_id: r.outcome for r in check_sources(warehouse, registry, registry.sources)}
    # The two deferred go before the one just checked: one of them now, the other next time.
    [checked_now] = [s for s, outcome in second.items() if outcome != "deferred"]
    assert first[checked_now] == "deferred"
    third = {r.source.source_id: r.outcome for r in check_sources(warehouse, registry, registry.sources)}
    [checked_last] = [s for s, outcome in third.items() if outcome != "deferred"]
    assert {checked_last, checked_now} == {s for s, outcome in first.items() if outcome == "deferred"}
