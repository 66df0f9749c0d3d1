"""Operator alerts: what happened, once per event, by email and optionally Slack.

Four kinds of event, each with a key that names it for good:
- run_failure     a Dagster run failed                     run_failure:<run id>
- city_failure    a city failed a stage of its refresh     city_failure:<run id>:<city>
- breaker_open    a source's circuit breaker opened        breaker_open:<source>:<open until>
- filing_overdue  a city's filing passed its due date      filing_overdue:<city>:<type>:<year>

`claim` inserts the keys into ops.operator_alerts and commits before anything is sent;
only the keys it inserted are delivered. So an event is alerted once, whichever process
sees it, however often, and across daemon restarts (a crash after the claim leaves the
alert 'sending': at most once, never twice). One message per kind per delivery lists that
kind's new events, so a bad night is a handful of emails, not one per city.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from psycopg2.extras import execute_values

from refresh_assets.lib.notify import EmailError, SmtpSettings, send_html

RUN_FAILURE, CITY_FAILURE, BREAKER_OPEN, FILING_OVERDUE = (
    "run_failure", "city_failure", "breaker_open", "filing_overdue")
KIND_TITLES = {
    RUN_FAILURE: "run failed",
    CITY_FAILURE: "city refresh failed",
    BREAKER_OPEN: "source breaker opened",
    FILING_OVERDUE: "filing overdue",
}
# City failures older than this are not alerted: the first start of the alerts does not
# replay the history, and a daemon down for less than this misses nothing.
CITY_FAILURE_LOOKBACK = timedelta(days=1)
DOCUMENT_NAMES = {"acfr": "ACFR", "calpers_valuation": "CalPERS valuation"}


@dataclass(frozen=True)
class Alert:
    key: str
    kind: str
    summary: str  # one line
    detail: str = ""
    city_key: str | None = None
    event_at: datetime | None = None


def run_failure_alert(run_id: str, job_name: str, cities: Sequence[str], error: str,
                      ui_url: str | None = None) -> Alert:
    which = f" ({', '.join(cities[:5])}{' …' if len(cities) > 5 else ''})" if cities else ""
    link = f"\nRun: {ui_url.rstrip('/')}/runs/{run_id}" if ui_url else f"\nRun id: {run_id}"
    return Alert(key=f"{RUN_FAILURE}:{run_id}", kind=RUN_FAILURE,
                 summary=f"{job_name}{which} failed", detail=f"{error[:1500]}{link}")


def city_failure_alerts(conn, now: datetime) -> list[Alert]:
    """Cities that failed a stage of their refresh lately. Stage 'run' is left out: it is
    written for a run that died, which is alerted as a run failure."""
    with conn.cursor() as cur:
        cur.execute(
            """select run_id, city_key, coalesce(city, city_key), stage, coalesce(error, ''),
                      recorded_at
               from ops.refresh_operations
               where status = 'failure' and stage <> 'run' and recorded_at >= %s
               order by recorded_at, city_key""", (now - CITY_FAILURE_LOOKBACK,))
        rows = cur.fetchall()
    return [Alert(key=f"{CITY_FAILURE}:{run_id}:{city_key}", kind=CITY_FAILURE,
                  summary=f"{city} failed at {stage}", detail=error[:1000], city_key=city_key,
                  event_at=at)
            for run_id, city_key, city, stage, error, at in rows]


def breaker_alerts(conn) -> list[Alert]:
    """Sources whose breaker is open now; each opening (its own open-until) is one event."""
    with conn.cursor() as cur:
        cur.execute(
            """select source_id, city_key, url, consecutive_failures, breaker_open_until,
                      breaker_openings,
                      (select error from ops.refresh_checks c where c.source_id = s.source_id
                       order by checked_at desc limit 1)
               from ops.source_state s
               where breaker_state = 'open' and breaker_open_until is not null
               order by source_id""")
        rows = cur.fetchall()
    return [Alert(key=f"{BREAKER_OPEN}:{source_id}:{until.isoformat()}", kind=BREAKER_OPEN,
                  summary=f"{source_id}: breaker open after {failures} failed checks, "
                          f"until {until:%Y-%m-%d %H:%M} UTC",
                  detail=f"{url}\nlast error: {error or 'unknown'}\n"
                         f"opened {openings} time(s) since it last closed; "
                         f"`refresh-assets check --reset {source_id}` closes it by hand",
                  city_key=city_key, event_at=until)
            for source_id, city_key, url, failures, until, openings, error in rows]


def overdue_filings(conn) -> pd.DataFrame | None:
    """Filings overdue now, most overdue first (marts.filing_status); None when the mart is
    not built yet."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass('marts.filing_status') is not null")
        if not cur.fetchone()[0]:
            return None
        cur.execute(
            """select city_key, coalesce(city, city_key) as city, document_type,
                      last_received_fiscal_year, expected_fiscal_year, next_due_date,
                      days_overdue, filings_missing
               from marts.filing_status where is_overdue
               order by days_overdue desc, city_key""")
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def describe_overdue(overdue: pd.DataFrame | None) -> str:
    """A line for summaries: e.g. "477 cities' ACFR, 2 cities' CalPERS valuation"."""
    if overdue is None:
        return "not known yet (marts.filing_status is not built)"
    if overdue.empty:
        return "none"
    cities = overdue.groupby("document_type")["city_key"].nunique()
    return ", ".join(f"{n} {'city' if n == 1 else 'cities'}' {DOCUMENT_NAMES.get(kind, kind)}"
                     for kind, n in cities.items())


def overdue_alerts(overdue: pd.DataFrame) -> list[Alert]:
    """One event per city, document type and latest year due, so the next year's deadline
    passing is a new event."""
    return [Alert(key=f"{FILING_OVERDUE}:{r.city_key}:{r.document_type}:{r.expected_fiscal_year}",
                  kind=FILING_OVERDUE,
                  summary=f"{r.city}: {DOCUMENT_NAMES.get(r.document_type, r.document_type)} "
                          f"{r.last_received_fiscal_year + 1} due {r.next_due_date:%Y-%m-%d}, "
                          f"{r.days_overdue} days overdue"
                          + (f" ({r.filings_missing} missing)" if r.filings_missing > 1 else ""),
                  city_key=r.city_key)
            for r in overdue.itertuples()]


def claim(conn, alerts: Iterable[Alert]) -> list[Alert]:
    """Records the alerts not recorded yet and returns them; commits, so the claim holds
    before anything is sent."""
    by_key = {a.key: a for a in alerts}
    if not by_key:
        return []
    with conn.cursor() as cur:
        inserted = execute_values(
            cur,
            """insert into ops.operator_alerts (alert_key, kind, city_key, summary, detail, event_at)
               values %s on conflict (alert_key) do nothing returning alert_key""",
            [(a.key, a.kind, a.city_key, a.summary, a.detail, a.event_at) for a in by_key.values()],
            fetch=True)
    conn.commit()
    return [by_key[key] for (key,) in inserted]


def compose(kind: str, alerts: Sequence[Alert]) -> tuple[str, str, str]:
    """Subject, text and HTML of one message about `alerts`, all of one kind."""
    title = KIND_TITLES[kind]
    subject = (f"[refresh-assets] {title}: {alerts[0].summary}" if len(alerts) == 1
               else f"[refresh-assets] {len(alerts)} alerts: {title}")
    text = "\n\n".join(f"- {a.summary}" + (f"\n  {a.detail.replace(chr(10), chr(10) + '  ')}"
                                            if a.detail else "") for a in alerts)
    items = "".join(
        f"<li><strong>{html.escape(a.summary)}</strong>"
        + (f"<pre>{html.escape(a.detail)}</pre>" if a.detail else "") + "</li>" for a in alerts)
    page = (f"<!doctype html><html><body><h1>{html.escape(subject)}</h1><ul>{items}</ul>"
            "<p>Every city's state: <code>marts.refresh_status</code>.</p></body></html>")
    return subject, text, page


@dataclass(frozen=True)
class Delivery:
    sent: int
    failed: int
    errors: tuple[str, ...]


def deliver(conn, alerts: Sequence[Alert], email: SmtpSettings | None,
            slack_post: Callable[[str], None] | None) -> Delivery:
    """Sends the claimed alerts, one message per kind, and records each one's outcome.
    `email` None: email is off; `slack_post` None: Slack is off."""
    sent = failed = 0
    errors: list[str] = []
    for kind in KIND_TITLES:
        batch = [a for a in alerts if a.kind == kind]
        if not batch:
            continue
        subject, text, page = compose(kind, batch)
        email_status, slack_status, problems = "off", "off", []
        if email is not None:
            try:
                send_html(email, subject, page, text)
                email_status = "sent"
            except EmailError as exc:
                email_status = "failed"
                problems.append(str(exc))
        if slack_post is not None:
            try:
                slack_post(f"*{subject}*\n{text}"[:39_000])
                slack_status = "sent"
            except Exception as exc:  # noqa: BLE001 - any client error is recorded, never raised
                slack_status = "failed"
                problems.append(f"Slack: {type(exc).__name__}: {exc}"[:500])
        outcome_failed = "failed" in (email_status, slack_status)
        failed += outcome_failed
        sent += not outcome_failed and "sent" in (email_status, slack_status)
        errors += problems
        with conn.cursor() as cur:
            cur.execute(
                """update ops.operator_alerts
                   set email_status = %s, slack_status = %s, error = %s,
                       sent_at = case when %s then now() end
                   where alert_key = any(%s)""",
                (email_status, slack_status, "; ".join(problems) or None,
                 "sent" in (email_status, slack_status), [a.key for a in batch]))
        conn.commit()
    return Delivery(sent=sent, failed=failed, errors=tuple(errors))
