"""A new source document, once end to end through the Dagster daemon as `make ui` starts it:
a link added to a served finance page is found on the sensor's next tick, recorded once in
ops.source_documents, emailed once to operators (a real SMTP server), and the notification
is completed when the entries sensor's refresh validates the operator's entry file.

Martinez is this module's city: no other test uses it, so its rows, runs and emails are its
own. The daemon's source sensor starts without a cursor and so also dispatches the 'new'
documents other tests of the session left behind: every assertion is about Martinez."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from refresh_assets.lib.run_tags import CITY, TRIGGER
from refresh_assets.settings import PROJECT_DIR
from tests import http_fixtures
from tests.integration.test_source_documents import (
    REGISTRY,
    finance_page,
    ingest_published_rows,
    rows,
)
from tests.smtp_fixtures import Inbox, smtp_server
from tests.ui_fixtures import running_ui

served_site = http_fixtures.served_site
pytestmark = pytest.mark.e2e

CITY_NAME, CITY_KEY, SOURCE_ID = "Martinez", "martinez", "martinez/finance"
PAGE = "/martinez/finance"
OLD_LINK = ("Comprehensive Annual Financial Report FY 2019-20", "/docs/martinez-cafr-2020.pdf")
NEW_LINK = ("Annual Comprehensive Financial Report FY 2022-23", "/docs/martinez-acfr-2023.pdf")
SUBJECT = "New ACFR to enter: Martinez, fiscal year 2023"
STAGE_SECONDS = 240  # each stage: a sensor tick (30 s) and a run through the daemon (20-60 s)


@dataclass
class Daemon:
    url: str
    log: Path
    inbox: Inbox
    entries: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n--- tail of the ui log ---\n" + "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as served:
        yield served


@pytest.fixture
def daemon(warehouse, dbt_manifest, served_site, inbox, tmp_path) -> Iterator[Daemon]:
    """`refresh-assets ui` (webserver + daemon) with a registry of one served page, an empty
    entries folder and the SMTP server above, all passed in its environment."""
    handler, smtp_port = inbox
    served_site.route(PAGE, finance_page(OLD_LINK), headers={"ETag": '"before"'})
    registry = tmp_path / "sources.yaml"
    registry.write_text(REGISTRY.format(
        cities=f"  {CITY_NAME}:\n    finance_pages: [{served_site.url(PAGE)}]"))
    # 2017-2020 are in the published data: only a later year is new.
    ingest_published_rows(warehouse, CITY_NAME)
    entries = tmp_path / "entries"
    entries.mkdir()
    env = {
        **os.environ,
        "REFRESH_SOURCES_FILE": str(registry),
        "REFRESH_ENTRIES_DIR": str(entries),
        "REFRESH_REPORTS_DIR": str(tmp_path / "reports"),
        "REFRESH_DOCUMENTS_DIR": str(tmp_path / "documents"),
        "REFRESH_SMTP_HOST": "127.0.0.1",
        "REFRESH_SMTP_PORT": str(smtp_port),
        "REFRESH_SMTP_SECURITY": "none",
        "REFRESH_SMTP_SENDER": "refresh@example.org",
        "REFRESH_SMTP_RECIPIENTS": "cfo@example.org",
        "REFRESH_SMTP_OPERATORS": "ops@example.org",
    }
    log_path = tmp_path / "ui.log"
    with running_ui(log_path, env=env) as url:
        yield Daemon(url, log_path, handler, entries)


def wait_for(what: str, probe: Callable[[], object], daemon: Daemon,
             seen: Callable[[], object] = lambda: None, timeout: float = STAGE_SECONDS):
    """Polls `probe` until it returns something true; fails naming what was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"no {what} within {timeout:.0f} s; seen: {seen()!r}" + daemon.log_tail())


def martinez_emails(daemon: Daemon) -> list:
    """The operators' emails naming Martinez (the refresh also emails its change report to
    the stakeholders, REFRESH_SMTP_RECIPIENTS)."""
    return [m for e, m in zip(daemon.inbox.envelopes, daemon.inbox.messages(), strict=True)
            if "ops@example.org" in e.rcpt_tos and CITY_NAME in (m["Subject"] or "")]


def checks_of_the_page(address) -> list[tuple]:
    return rows(address, "select check_id, outcome from ops.refresh_checks where source_id = %s "
                         "order by check_id", SOURCE_ID)


def documents(address) -> list[tuple]:
    return rows(address, "select document_id, fiscal_year, status, url from ops.source_documents "
                         "where city_key = %s order by document_id", CITY_KEY)


def notifications(address) -> list[tuple]:
    return rows(address, "select notification_id, fiscal_year, status, email_status, completed_by_run "
                         "from ops.refresh_notifications where city_key = %s", CITY_KEY)


def sensor_runs(instance: dg.DagsterInstance, city: str | None = None) -> list[dg.DagsterRun]:
    tags = {TRIGGER: "source_documents_sensor", **({CITY: city} if city else {})}
    return [record.dagster_run for record in instance.get_run_records(dg.RunsFilter(tags=tags))]


def source_document_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return sensor_runs(instance, CITY_KEY)


def test_a_link_on_a_served_page_is_emailed_once_and_completed_by_its_entry_through_the_daemon(
        warehouse, daemon, served_site, tmp_path):
    # The daemon's first tick reads the page as it was: the city's 2020 report, entered already.
    # Its second tick proves the first one over; the runs the first one started for the other
    # tests' leftover documents end before the link appears, so the timings below are Martinez's.
    wait_for("two checks of the page", lambda: len(checks_of_the_page(warehouse)) >= 2, daemon,
             lambda: checks_of_the_page(warehouse))
    assert [(year, status) for _, year, status, _ in documents(warehouse)] == [
        (2020, "already_entered")]
    with dg.DagsterInstance.get() as instance:
        wait_for("end of the runs for leftover documents",
                 lambda: all(r.is_finished for r in sensor_runs(instance)), daemon,
                 lambda: [(r.tags.get(CITY), r.status) for r in sensor_runs(instance)])
        assert source_document_runs(instance) == []

    served_site.route(PAGE, finance_page(NEW_LINK, OLD_LINK), headers={"ETag": '"after"'})
    link_added = time.monotonic()
    new_url = served_site.url(NEW_LINK[1])

    found = wait_for("record of the new link", lambda: [d for d in documents(warehouse)
                                                        if d[3] == new_url], daemon,
                     lambda: documents(warehouse))
    link_to_recorded = time.monotonic() - link_added
    assert [(year, status) for _, year, status, _ in found] == [(2023, "new")]

    [message] = wait_for("email naming Martinez", lambda: martinez_emails(daemon), daemon,
                         lambda: ([m["Subject"] for m in daemon.inbox.messages()],
                                  notifications(warehouse)))
    link_to_email = time.monotonic() - link_added
    assert message["Subject"] == SUBJECT
    [envelope] = [e for e in daemon.inbox.envelopes if SUBJECT.encode() in e.content]
    assert envelope.rcpt_tos == ["ops@example.org"]
    assert new_url in message.get_body(preferencelist=("html",)).get_content()
    [(notification_id, year, status, email_status, _)] = notifications(warehouse)
    assert (year, status, email_status) == (2023, "pending", "sent")

    # The operator enters the report; the entries sensor's refresh validates it.
    entry = yaml.safe_load((PROJECT_DIR / "entries" / "vallejo" / "2020.yaml").read_text())
    entry.update(city=CITY_NAME, fiscal_year=2023,
                 source={"title": "City of Martinez ACFR FY 2022-23", "url": new_url})
    (daemon.entries / CITY_KEY).mkdir()
    draft = tmp_path / "2023.yaml"
    draft.write_text(yaml.safe_dump(entry))
    shutil.move(draft, daemon.entries / CITY_KEY / "2023.yaml")  # whole, never half-written
    entry_added = time.monotonic()

    [(_, _, _, _, completed_by)] = wait_for(
        "completed notification", lambda: [n for n in notifications(warehouse) if n[2] == "completed"],
        daemon, lambda: notifications(warehouse))
    link_to_completed = time.monotonic() - link_added
    entry_to_completed = time.monotonic() - entry_added

    with dg.DagsterInstance.get() as instance:
        refresh = instance.get_run_by_id(completed_by)
        assert refresh is not None and refresh.job_name == "refresh_city", refresh
        assert refresh.tags.get(TRIGGER) == "sensor" and refresh.tags.get(CITY) == CITY_KEY

        # One more tick of the source sensor after completion: no new run, no second email.
        checks_before = len(checks_of_the_page(warehouse))
        wait_for("source check after completion",
                 lambda: len(checks_of_the_page(warehouse)) > checks_before, daemon,
                 lambda: checks_of_the_page(warehouse)[-3:])
        wait_for("end of the city's source_documents runs",
                 lambda: all(r.is_finished for r in source_document_runs(instance)), daemon,
                 lambda: [(r.run_id, r.status) for r in source_document_runs(instance)])
        runs = source_document_runs(instance)
        assert [(r.job_name, r.status) for r in runs] == [
            ("source_documents", dg.DagsterRunStatus.SUCCESS)], daemon.log_tail()

    assert [m["Subject"] for m in martinez_emails(daemon)] == [SUBJECT], daemon.log_tail()
    assert [(year, status) for _, year, status, _ in documents(warehouse)] == [
        (2020, "already_entered"), (2023, "new")]
    assert [n[:4] for n in notifications(warehouse)] == [
        (notification_id, 2023, "completed", "sent")]
    print(f"\nMartinez through the daemon: link -> recorded {link_to_recorded:.1f} s, "
          f"link -> email {link_to_email:.1f} s, link -> completed {link_to_completed:.1f} s "
          f"(entry file -> completed {entry_to_completed:.1f} s)")
