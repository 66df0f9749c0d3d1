"""Overdue filings (marts.filing_status, marts.refresh_status, the check no_filing_overdue) and
operator alerts: one email per event through a real SMTP server (aiosmtpd), Slack through a
local Web API server, never the same event twice."""

from __future__ import annotations

import json
import uuid
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import dagster as dg
import pytest

from refresh_assets.lib.alerts import KIND_TITLES
from refresh_assets.lib.database import warehouse_connection
from tests.conftest import free_port
from tests.forecast_fixtures import dbt_build
from tests.smtp_fixtures import smtp_server, use_smtp_server

pytestmark = pytest.mark.integration


def latest_acfr_due(today: date) -> int:
    """The latest fiscal year (to 30 June) whose ACFR was due, 31 March after it, before today."""
    return today.year - 1 if today > date(today.year, 3, 31) else today.year - 2


def latest_valuation_due(today: date) -> int:
    """The latest valuation (30 June) due, a year later, before today."""
    return today.year - 1 if today > date(today.year, 6, 30) else today.year - 2


def execute(address, statement: str, params=()) -> list[tuple]:
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


def found_document(address, city_key: str, doc_type: str, year: int) -> None:
    execute(address, """insert into ops.source_documents
                        (source_id, city_key, doc_type, fiscal_year, url, title, status)
                        values (%s, %s, %s, %s, %s, %s, 'new')""",
            (f"{city_key}/finance", city_key, doc_type, year,
             f"http://127.0.0.1/{city_key}/{doc_type}-{year}.pdf", f"{doc_type} {year}"))


def failed_city(address, city_key: str, stage: str = "validation") -> str:
    run_id = str(uuid.uuid4())
    execute(address, """insert into ops.refresh_operations
                        (run_id, city_key, city, trigger, status, stage, error)
                        values (%s, %s, %s, 'sensor', 'failure', %s, %s)""",
            (run_id, city_key, city_key.title(), stage, f"{city_key}: gf_revenues: required"))
    return run_id


def open_breaker(address, source_id: str) -> None:
    execute(address, """insert into ops.source_state (source_id, city_key, url,
                            consecutive_failures, breaker_state, breaker_open_until,
                            breaker_openings)
                        values (%s, %s, %s, 5, 'open', now() + interval '1 hour', 1)""",
            (source_id, source_id.split("/")[0], f"http://127.0.0.1/{source_id}"))


@pytest.fixture(scope="module")
def filings(warehouse, tmp_path_factory):
    """Three cities' filings: Overdueville's last ACFR is four years old; Ontime has the
    latest ACFR due; Pensionburg's valuation is two years late, its ACFR on time."""
    today = date.today()
    found_document(warehouse, "overdueville", "acfr", today.year - 4)
    found_document(warehouse, "ontime", "acfr", latest_acfr_due(today))
    found_document(warehouse, "pensionburg", "acfr", latest_acfr_due(today))
    found_document(warehouse, "pensionburg", "calpers_valuation", latest_valuation_due(today) - 2)
    dbt_build(tmp_path_factory.mktemp("dbt"), "+refresh_status")
    return warehouse


def filing_rows(address, *cities: str) -> dict[tuple[str, str], tuple]:
    rows = execute(address, """select city_key, document_type, last_received_fiscal_year,
                                      expected_fiscal_year, next_due_date, is_overdue,
                                      days_overdue, filings_missing
                               from marts.filing_status where city_key = any(%s)""",
                   (list(cities),))
    return {(r[0], r[1]): r[2:] for r in rows}


def test_a_filing_is_overdue_once_its_due_date_has_passed(filings):
    today = date.today()
    rows = filing_rows(filings, "overdueville", "ontime", "pensionburg")
    last, expected, next_due, overdue, days, missing = rows[("overdueville", "acfr")]
    assert (last, expected, overdue) == (today.year - 4, latest_acfr_due(today), True)
    assert next_due == date(today.year - 2, 3, 31)  # FY ending June (year - 3): 9 months later
    assert (days, missing) == ((today - next_due).days, expected - last)

    last, expected, next_due, overdue, days, missing = rows[("ontime", "acfr")]
    assert (overdue, days, missing) == (False, 0, 0)
    assert next_due == date(last + 2, 3, 31) and next_due >= today

    assert rows[("pensionburg", "acfr")][3] is False
    last, expected, next_due, overdue, days, _ = rows[("pensionburg", "calpers_valuation")]
    assert (overdue, expected - last) == (True, 2)
    assert next_due == date(last + 2, 6, 30)  # valued 30 June, due a year later
    assert ("ontime", "calpers_valuation") not in rows  # valuations it never had: not tracked


def test_refresh_status_flags_each_city_with_an_overdue_filing(filings):
    rows = execute(filings, """select city_key, acfr_overdue, acfr_days_overdue,
                                      calpers_valuation_overdue, filings_overdue
                               from marts.refresh_status
                               where city_key in ('overdueville', 'ontime', 'pensionburg')
                               order by city_key""")
    assert [(r[0], r[1], r[2] > 300, r[3], r[4]) for r in rows] == [
        ("ontime", False, False, False, 0),
        ("overdueville", True, True, False, 1),
        ("pensionburg", False, False, True, 1),
    ]


def test_the_check_warns_and_lists_the_overdue_cities(filings):
    from refresh_assets.definitions import defs

    job = defs.resolve_job_def("filing_deadlines")
    outcome = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    [evaluation] = outcome.get_asset_check_evaluations()
    assert evaluation.check_name == "no_filing_overdue"
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    [(cities, most_overdue)] = execute(filings, """
        select count(distinct city_key),
               (array_agg(city_key order by days_overdue desc, city_key))[1]
        from marts.filing_status where is_overdue""")
    assert evaluation.metadata["cities_overdue"].value == cities >= 2
    listed = evaluation.metadata["most_overdue"].value
    assert most_overdue in listed and "ontime" not in listed


class SlackApi(BaseHTTPRequestHandler):
    """Slack's Web API method chat.postMessage, as far as the client needs it."""

    posts: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        SlackApi.posts.append((self.headers["Authorization"], json.loads(body)))
        answer = json.dumps({"ok": True, "channel": "C1", "ts": "1.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def slack_api():
    SlackApi.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), SlackApi)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api/", SlackApi.posts
    server.shutdown()


def evaluate_alerts(**resources) -> str:
    from refresh_assets.defs.alerts import operator_alerts_sensor
    from refresh_assets.defs.resources import build_resources

    needed = {name: build_resources()[name] for name in ("warehouse", "smtp", "slack")}
    with dg.build_sensor_context(resources={**needed, **resources}) as context:
        return operator_alerts_sensor(context).skip_message


def alert_rows(address, *keys_like: str) -> list[tuple]:
    return execute(address, """select kind, email_status, slack_status, error
                               from ops.operator_alerts where alert_key like any(%s)
                               order by alert_key""", (list(keys_like),))


def test_each_event_is_alerted_once_by_email_to_operators(filings, monkeypatch):
    failed_run = failed_city(filings, "failtown")
    failed_city(filings, "failtown", stage="run")  # a dead run's city: alerted as a run failure
    open_breaker(filings, "breakerton/finance")
    with smtp_server() as (inbox, port):
        use_smtp_server(monkeypatch, port)
        outcome = evaluate_alerts()
        messages = inbox.messages()
        kinds = [title for m in messages for title in KIND_TITLES.values()
                 if f" {title}" in m["Subject"]]
        assert sorted(kinds) == sorted(set(kinds)), "one message per kind"
        assert {"city refresh failed", "source breaker opened", "filing overdue"} <= set(kinds)
        text = {m["Subject"]: m.get_body(("plain",)).get_content() for m in messages}
        assert all(m["To"] == "ops@example.org" for m in messages)
        assert any("Failtown failed at validation" in s + t for s, t in text.items())
        assert not any("failed at run" in s + t for s, t in text.items())
        assert any("breakerton/finance: breaker open after 5 failed checks" in s + t
                   for s, t in text.items())
        assert any("overdueville: ACFR " in s + t for s, t in text.items())
        assert "new event(s)" in outcome and "sent by email" in outcome

        assert evaluate_alerts() == "no new event to alert"
        assert len(inbox.messages()) == len(messages)

        failed_city(filings, "failtown")  # a second failure is a new event, alone
        evaluate_alerts()
        [new] = inbox.messages()[len(messages):]
        assert new["Subject"] == "[refresh-assets] city refresh failed: Failtown failed at validation"
    assert alert_rows(filings, f"city_failure:{failed_run}:%") == [
        ("city_failure", "sent", "off", None)]


def test_a_failed_email_is_recorded_and_never_sent_again(filings, monkeypatch):
    open_breaker(filings, "nowhere/finance")
    use_smtp_server(monkeypatch, free_port())  # nothing listens there
    assert "1 failed" in evaluate_alerts()
    [(kind, email, slack, error)] = alert_rows(filings, "breaker_open:nowhere/finance:%")
    assert (kind, email, slack) == ("breaker_open", "failed", "off")
    assert "check REFRESH_SMTP_HOST" in error
    with smtp_server() as (inbox, port):
        use_smtp_server(monkeypatch, port)
        evaluate_alerts()
        assert not any("nowhere/finance" in s for s in inbox.subjects())


def test_alerts_go_to_slack_when_a_token_is_set(filings, slack_api, monkeypatch):
    url, posts = slack_api
    from refresh_assets.defs.resources import SlackAlertsResource

    open_breaker(filings, "slackville/finance")
    monkeypatch.setenv("REFRESH_SMTP_HOST", "")
    outcome = evaluate_alerts(slack=SlackAlertsResource(token="xoxb-test-token",
                                                         channel="#ops", api_url=url))
    assert "sent by Slack" in outcome
    [(authorization, body)] = [p for p in posts if "slackville/finance" in p[1]["text"]]
    assert authorization == "Bearer xoxb-test-token" and body["channel"] == "#ops"
    assert alert_rows(filings, "breaker_open:slackville/finance:%") == [
        ("breaker_open", "off", "sent", None)]


def test_a_failed_run_is_alerted_once(filings, monkeypatch):
    from refresh_assets.defs.reports import refresh_failure_sensor
    from refresh_assets.defs.resources import build_resources

    @dg.asset
    def always_fails():
        raise RuntimeError("the warehouse went away")

    instance = dg.DagsterInstance.ephemeral()
    # Tagged with a city, as an export run of that city is: not a refresh of it.
    result = dg.materialize([always_fails], instance=instance, raise_on_error=False,
                            tags={"dagster/partition": "exportville"})
    with smtp_server() as (inbox, port):
        use_smtp_server(monkeypatch, port)
        for _ in range(2):  # the sensor seeing the run twice (a restart) alerts once
            context = dg.build_run_status_sensor_context(
                sensor_name="refresh_failure_sensor", dagster_instance=instance,
                dagster_run=result.dagster_run, dagster_event=result.get_run_failure_event(),
                resources={name: build_resources()[name]
                           for name in ("warehouse", "smtp", "slack")}).for_run_failure()
            refresh_failure_sensor(context)
        [message] = inbox.messages()
    assert message["Subject"].startswith("[refresh-assets] run failed: __ephemeral_asset_job__")
    assert result.run_id in message.get_body(("plain",)).get_content()
    assert "the warehouse went away" in message.get_body(("plain",)).get_content()
    assert execute(filings, "select count(*) from ops.refresh_operations where run_id = %s",
                   (result.run_id,)) == [(0,)]
