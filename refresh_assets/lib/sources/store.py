"""The ops tables of source checks (migration 0003): state, checks, documents, notifications.

Every function takes an open connection and leaves the transaction to its caller, except
`claim_email`, which commits on purpose (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from psycopg2.extras import execute_values

from refresh_assets.lib.sources.breaker import BreakerState
from refresh_assets.lib.sources.documents import ACFR, CALPERS_VALUATION, DiscoveredDocument
from refresh_assets.lib.sources.registry import Source

RELIABILITY_WINDOW = 30  # checks


def _query_frame(conn, query: str, params: dict | None = None) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


@dataclass(frozen=True)
class SourceState:
    etag: str | None = None
    last_modified: str | None = None
    content_sha256: str | None = None
    last_checked_at: datetime | None = None
    breaker: BreakerState = BreakerState()


def load_states(conn, source_ids: list[str]) -> dict[str, SourceState]:
    with conn.cursor() as cur:
        cur.execute(
            """select source_id, etag, last_modified, content_sha256, last_checked_at, breaker_state,
                      consecutive_failures, breaker_open_until, breaker_openings
               from ops.source_state where source_id = any(%s)""", (source_ids,))
        return {row[0]: SourceState(row[1], row[2], row[3], row[4],
                                    BreakerState(row[5], row[6], row[7], row[8]))
                for row in cur.fetchall()}


@dataclass(frozen=True)
class CheckRecord:
    """One check as it goes to ops.refresh_checks, and what it leaves in ops.source_state."""

    source: Source
    checked_at: datetime
    outcome: str  # changed | unchanged | not_modified | failed
    breaker: BreakerState
    http_status: int | None = None
    bytes: int = 0
    duration_seconds: float | None = None
    documents: tuple[DiscoveredDocument, ...] = ()
    error_kind: str | None = None
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_sha256: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome != "failed"


def record_check(conn, record: CheckRecord, oldest_fiscal_year: int) -> tuple[int, list[dict]]:
    """Stores a check, the source's new state and the documents it found.

    Returns the check's id and the documents new to the database (as dicts with their
    document_id and status)."""
    with conn.cursor() as cur:
        cur.execute(
            """insert into ops.refresh_checks (source_id, city_key, url, checked_at, outcome,
                   http_status, bytes, duration_seconds, documents_found, error_kind, error)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning check_id""",
            (record.source.source_id, record.source.city_key, record.source.url, record.checked_at,
             record.outcome, record.http_status, record.bytes, record.duration_seconds,
             len(record.documents) if record.outcome == "changed" else None,
             record.error_kind, record.error))
        check_id = cur.fetchone()[0]
        breaker = record.breaker
        # Validators and checksum move only with a page that was read: a failure keeps
        # the last good ones, so the next check can still be conditional.
        cur.execute(
            """insert into ops.source_state as s (source_id, city_key, url, etag, last_modified,
                   content_sha256, last_checked_at, last_success_at, consecutive_failures,
                   breaker_state, breaker_open_until, breaker_openings)
               values (%(id)s, %(city)s, %(url)s, %(etag)s, %(lm)s, %(sha)s, %(at)s,
                       case when %(ok)s then %(at)s end, %(fails)s, %(state)s, %(until)s, %(openings)s)
               on conflict (source_id) do update set
                   url = excluded.url,
                   etag = case when %(read)s then excluded.etag else s.etag end,
                   last_modified = case when %(read)s then excluded.last_modified else s.last_modified end,
                   content_sha256 = coalesce(excluded.content_sha256, s.content_sha256),
                   last_checked_at = excluded.last_checked_at,
                   last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
                   consecutive_failures = excluded.consecutive_failures,
                   breaker_state = excluded.breaker_state,
                   breaker_open_until = excluded.breaker_open_until,
                   breaker_openings = excluded.breaker_openings""",
            {"id": record.source.source_id, "city": record.source.city_key, "url": record.source.url,
             "etag": record.etag, "lm": record.last_modified, "sha": record.content_sha256,
             "at": record.checked_at, "ok": record.succeeded, "fails": breaker.consecutive_failures,
             "state": breaker.state, "until": breaker.open_until, "openings": breaker.openings,
             "read": record.outcome == "changed"})
        new = (_record_documents(cur, record, check_id, oldest_fiscal_year)
               if record.outcome == "changed" else [])
        cur.execute("update ops.refresh_checks set new_documents = %s where check_id = %s",
                    (len([d for d in new if d["status"] == "new"]) if record.succeeded else None,
                     check_id))
    return check_id, new


def _entered_years(cur, city_key: str) -> set[tuple[str, int]]:
    """(doc_type, fiscal_year) the city already has figures for: an ACFR year with general
    fund revenues in any version (an entry or the published data), a valuation year with an
    entered CalPERS valuation."""
    cur.execute(
        """select distinct fiscal_year from raw.fiscal_entries
           where city_key = %s and gf_revenues is not null""", (city_key,))
    entered = {(ACFR, year) for (year,) in cur.fetchall()}
    cur.execute(
        """select distinct extract(year from valuation_date)::int from raw.calpers_valuation_entries
           where city_key = %s""", (city_key,))
    return entered | {(CALPERS_VALUATION, year) for (year,) in cur.fetchall()}


def _record_documents(cur, record: CheckRecord, check_id: int, oldest_fiscal_year: int) -> list[dict]:
    """Inserts the documents of a city not seen before (one row per URL). A new document
    is 'new' unless it is older than `oldest_fiscal_year`, its city-year is entered already,
    or (for an ACFR, one per city and year) another URL of it was seen first; a valuation
    is per plan, so per URL."""
    city = record.source.city_key
    cur.execute("select url from ops.source_documents where city_key = %s and url = any(%s)",
                (city, [d.url for d in record.documents]))
    known_urls = {url for (url,) in cur.fetchall()}
    unseen = [d for d in record.documents if d.url not in known_urls]
    if not unseen:
        return []
    entered = _entered_years(cur, city)
    cur.execute("select distinct fiscal_year from ops.source_documents where city_key = %s "
                "and doc_type = %s", (city, ACFR))
    acfr_years_seen = {year for (year,) in cur.fetchall()}
    rows = []
    for document in unseen:
        if document.fiscal_year < oldest_fiscal_year:
            status = "out_of_scope"
        elif (document.doc_type, document.fiscal_year) in entered:
            status = "already_entered"
        elif document.doc_type == ACFR and document.fiscal_year in acfr_years_seen:
            status = "duplicate"
        else:
            status = "new"
        if document.doc_type == ACFR:
            acfr_years_seen.add(document.fiscal_year)
        rows.append((record.source.source_id, city, document.doc_type, document.fiscal_year,
                     document.url, document.title, status, record.checked_at, check_id))
    inserted = execute_values(
        cur,
        """insert into ops.source_documents (source_id, city_key, doc_type, fiscal_year, url, title,
               status, first_seen_at, first_seen_check) values %s
           on conflict (city_key, url) do nothing
           returning document_id, source_id, city_key, doc_type, fiscal_year, url, title, status""",
        rows, fetch=True)
    columns = ("document_id", "source_id", "city_key", "doc_type", "fiscal_year", "url", "title",
               "status")
    return [dict(zip(columns, row, strict=True)) for row in inserted]


def new_documents_after(conn, document_id: int) -> list[dict]:
    """Documents to tell operators about (status 'new'), recorded after `document_id`."""
    with conn.cursor() as cur:
        cur.execute("""select document_id, city_key from ops.source_documents
                       where document_id > %s and status = 'new' order by document_id""",
                    (document_id,))
        return [{"document_id": d, "city_key": c} for d, c in cur.fetchall()]


def city_documents_to_handle(conn, city_key: str) -> pd.DataFrame:
    """The city's new documents with their notification (created here if missing) and
    download state: what the `source_documents` asset works through."""
    with conn.cursor() as cur:
        cur.execute(
            """insert into ops.refresh_notifications (document_id, city_key, doc_type, fiscal_year)
               select document_id, city_key, doc_type, fiscal_year from ops.source_documents
               where city_key = %s and status = 'new'
               on conflict (document_id) do nothing""", (city_key,))
    return _query_frame(conn,
        """select d.document_id, d.source_id, d.city_key, d.doc_type, d.fiscal_year, d.url, d.title,
                  d.first_seen_at, d.download_status, n.notification_id, n.status, n.email_status
           from ops.source_documents d join ops.refresh_notifications n using (document_id)
           where d.city_key = %(city)s order by d.document_id""", {"city": city_key})


def claim_email(conn, notification_id: int) -> bool:
    """Marks the notification's email as being sent, and COMMITS, before anything is sent:
    if the process dies while sending, the email is not sent again (at most once; the row
    stays 'sending' and `refresh-assets notifications` shows it). A failed email may be
    claimed again. Returns False when the email was sent, or is being sent, already."""
    with conn.cursor() as cur:
        cur.execute("""update ops.refresh_notifications set email_status = 'sending'
                       where notification_id = %s and email_status in ('not_sent', 'failed', 'off')
                       returning notification_id""", (notification_id,))
        claimed = cur.fetchone() is not None
    conn.commit()
    return claimed


def record_email(conn, notification_id: int, email_status: str, error: str | None = None) -> None:
    with conn.cursor() as cur:
        cur.execute("""update ops.refresh_notifications set email_status = %s, email_error = %s,
                           emailed_at = case when %s = 'sent' then now() end
                       where notification_id = %s""",
                    (email_status, error, email_status, notification_id))


def record_download(conn, document_id: int, status: str, *, sha256: str | None = None,
                    path: str | None = None, size: int | None = None, error: str | None = None) -> None:
    with conn.cursor() as cur:
        cur.execute("""update ops.source_documents set download_status = %s, download_sha256 = %s,
                           download_path = %s, download_bytes = %s, download_error = %s
                       where document_id = %s""", (status, sha256, path, size, error, document_id))


def list_notifications(conn, *, pending_only: bool = False) -> pd.DataFrame:
    where = "where n.status <> 'completed'" if pending_only else ""
    return _query_frame(conn,
        f"""select n.notification_id as id, n.status, d.city_key, n.doc_type, n.fiscal_year,
                   n.email_status, n.created_at, n.acknowledged_by, n.completed_at, d.url, d.title
            from ops.refresh_notifications n join ops.source_documents d using (document_id)
            {where} order by n.notification_id""")


class NotificationError(ValueError):
    pass


def acknowledge(conn, notification_id: int, by: str) -> str:
    """Pending -> acknowledged. Returns the status it had. Raises NotificationError when
    there is no such notification (an acknowledged or completed one is left as it is)."""
    with conn.cursor() as cur:
        cur.execute("select status from ops.refresh_notifications where notification_id = %s",
                    (notification_id,))
        row = cur.fetchone()
        if row is None:
            raise NotificationError(f"no notification {notification_id}; "
                                    "`refresh-assets notifications` lists them")
        if row[0] == "pending":
            cur.execute("""update ops.refresh_notifications set status = 'acknowledged',
                               acknowledged_at = now(), acknowledged_by = %s
                           where notification_id = %s""", (by, notification_id))
    return row[0]


def complete_entered(conn, city_keys: list[str], run_id: str) -> list[int]:
    """Completes the open notifications of these cities whose city-year is now entered: an
    ACFR year validated from an operator's entry file, a valuation year with an entered
    (and so validated) CalPERS valuation. Returns the notifications completed."""
    with conn.cursor() as cur:
        cur.execute(
            """update ops.refresh_notifications n set status = 'completed', completed_at = now(),
                   completed_by_run = %(run)s
               where n.city_key = any(%(cities)s) and n.status <> 'completed' and (
                   (n.doc_type = 'acfr' and exists (
                       select 1 from analytics.validated_fiscal_data v
                       where v.city_key = n.city_key and v.fiscal_year = n.fiscal_year
                         and v.source_kind = 'entry_file'))
                   or (n.doc_type = 'calpers_valuation' and exists (
                       select 1 from raw.calpers_valuation_entries c
                       where c.city_key = n.city_key
                         and extract(year from c.valuation_date) = n.fiscal_year)))
               returning n.notification_id""", {"run": run_id, "cities": city_keys})
        return sorted(row[0] for row in cur.fetchall())


def reliability(conn, source_ids: list[str], window: int = RELIABILITY_WINDOW) -> pd.DataFrame:
    """Per source: its share of successful checks among its last `window`, with its state."""
    return _query_frame(conn,
        """with recent as (
               select source_id, outcome, row_number() over (
                   partition by source_id order by checked_at desc, check_id desc) as n
               from ops.refresh_checks where source_id = any(%(ids)s))
           select s.source_id, s.url, s.breaker_state, s.consecutive_failures, s.breaker_open_until,
                  s.last_checked_at, s.last_success_at,
                  count(r.outcome) as checks,
                  count(r.outcome) filter (where r.outcome <> 'failed') as successes
           from ops.source_state s left join recent r on r.source_id = s.source_id and r.n <= %(w)s
           where s.source_id = any(%(ids)s)
           group by s.source_id order by s.source_id""", {"ids": source_ids, "w": window})


def last_errors(conn, source_ids: list[str]) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute("""select distinct on (source_id) source_id, error from ops.refresh_checks
                       where source_id = any(%s) order by source_id, checked_at desc, check_id desc""",
                    (source_ids,))
        return {source_id: error for source_id, error in cur.fetchall() if error}


def reset_breaker(conn, source_id: str) -> bool:
    """Closes a source's breaker by hand. Returns False when the source was never checked."""
    with conn.cursor() as cur:
        cur.execute("""update ops.source_state set breaker_state = 'closed', consecutive_failures = 0,
                           breaker_open_until = null, breaker_openings = 0
                       where source_id = %s returning source_id""", (source_id,))
        return cur.fetchone() is not None

