"""One check of many sources: what the sensor does at each tick and `refresh-assets check` once.

For each source that is due and whose breaker admits a check: a conditional GET; a 304 or
a body with the checksum already parsed does no further work; a changed page is parsed
and its documents recorded. Hosts are checked in parallel (network time dominates), one
host's sources one after the other (its rate limit); the results are written by the
caller's thread, each check in its own transaction, so one source's failure never stops
the others and a crash loses at most the checks not yet written.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from refresh_assets.lib.database import ServerAddress, connect
from refresh_assets.lib.sources.breaker import BreakerState, admits, after_failure, after_success
from refresh_assets.lib.sources.discovery import find_documents
from refresh_assets.lib.sources.fetching import FetchError, FetchPolicy, PoliteFetcher
from refresh_assets.lib.sources.registry import Registry, Source, is_due
from refresh_assets.lib.sources.store import CheckRecord, SourceState, load_states, record_check

MEGABYTE = 1_000_000


def fetch_policy(registry: Registry) -> FetchPolicy:
    checks = registry.checks
    return FetchPolicy(
        user_agent=checks.user_agent,
        allowed_hosts=registry.allowed_hosts,
        connect_timeout=checks.connect_timeout_seconds,
        read_timeout=checks.read_timeout_seconds,
        min_interval_seconds=checks.min_interval_seconds,
        host_intervals=registry.host_intervals,
        retries=checks.retries,
        backoff_seconds=checks.backoff_seconds,
        max_page_bytes=int(checks.max_page_megabytes * MEGABYTE),
        max_document_bytes=int(checks.downloads.max_megabytes * MEGABYTE),
        document_content_types=tuple(checks.downloads.content_types),
    )


_shared_fetchers: dict[str, PoliteFetcher] = {}
_shared_fetchers_lock = threading.Lock()


def shared_fetcher(policy: FetchPolicy) -> PoliteFetcher:
    """One fetcher per policy for the life of the process (the code server's, for the
    sensor): its robots.txt cache (24 h) and connection pool outlive a tick, so an
    unchanged tick transfers no robots.txt either."""
    key = repr(policy)
    with _shared_fetchers_lock:
        if key not in _shared_fetchers:
            _shared_fetchers[key] = PoliteFetcher(policy)
        return _shared_fetchers[key]


@dataclass(frozen=True)
class CheckResult:
    """A source's check as the sensor and the CLI report it."""

    source: Source
    outcome: str  # changed | unchanged | not_modified | failed | breaker_open | not_due | deferred
    breaker: BreakerState
    was_failing: bool = False  # the source's last check before this one had failed
    documents_found: int = 0
    new_documents: list[dict] = field(default_factory=list)
    error: str | None = None
    http_status: int | None = None
    bytes: int = 0
    duration_seconds: float = 0.0


@dataclass(frozen=True)
class _Admitted:
    source: Source
    state: SourceState
    breaker: BreakerState


def _check_one(fetcher: PoliteFetcher, registry: Registry, admitted: _Admitted) -> CheckRecord:
    source, state = admitted.source, admitted.state
    now = datetime.now(UTC)
    started = time.monotonic()
    breaker_rules = {"failures_to_open": registry.checks.breaker.failures,
                     "cooldown": timedelta(minutes=registry.checks.breaker.cooldown_minutes)}
    try:
        page = fetcher.fetch_page(source.url, etag=state.etag, last_modified=state.last_modified)
        if page.not_modified or page.sha256 == state.content_sha256:
            outcome, documents = ("not_modified" if page.not_modified else "unchanged"), ()
        else:
            outcome = "changed"
            documents = tuple(find_documents(page.body, page.final_url, source.doc_types))
    except FetchError as exc:
        return CheckRecord(source, now, "failed", after_failure(admitted.breaker, now, **breaker_rules),
                           http_status=exc.status, bytes=exc.bytes_received,
                           duration_seconds=time.monotonic() - started, error_kind=exc.kind,
                           error=str(exc))
    except Exception as exc:  # a page the parser chokes on is that source's failure alone
        return CheckRecord(source, now, "failed", after_failure(admitted.breaker, now, **breaker_rules),
                           duration_seconds=time.monotonic() - started, error_kind="parse",
                           error=f"{source.url}: the page could not be parsed: "
                                 f"{type(exc).__name__}: {exc}")
    return CheckRecord(source, now, outcome, after_success(admitted.breaker),
                       http_status=page.status, bytes=page.bytes_received,
                       duration_seconds=time.monotonic() - started, documents=documents,
                       etag=page.etag, last_modified=page.last_modified,
                       content_sha256=page.sha256 if outcome == "changed" else None)


def check_sources(address: ServerAddress, registry: Registry, sources: Iterable[Source], *,
                  force: bool = False, now: datetime | None = None,
                  fetcher: PoliteFetcher | None = None,
                  on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Checks the sources that are due (all of them with `force`) and whose breaker admits
    it, the longest unchecked first; records every check made. `on_result` sees each result
    as it is recorded.

    No check starts after `checks.tick_budget_seconds`: the sources left are reported
    `deferred`, stay due, and go first at the next call, so a tick with many pages to parse
    stays inside Dagster's sensor time limit (60 s) and no source waits for ever."""
    sources = list(sources)
    now = now or datetime.now(UTC)
    conn = connect(address, application_name="refresh_assets source checks")
    try:
        with conn:
            states = load_states(conn, [s.source_id for s in sources])
        results: list[CheckResult] = []

        def report(result: CheckResult) -> None:
            results.append(result)
            if on_result:
                on_result(result)

        admitted_by_host: dict[str, list[_Admitted]] = {}
        never = datetime.min.replace(tzinfo=UTC)
        for source in sorted(sources, key=lambda s: states.get(s.source_id, SourceState())
                             .last_checked_at or never):
            state = states.get(source.source_id, SourceState())
            breaker = admits(state.breaker, now)
            if breaker is None:
                report(CheckResult(source, "breaker_open", state.breaker))
            elif not force and not is_due(source, registry, state.last_checked_at, now):
                report(CheckResult(source, "not_due", state.breaker))
            else:
                admitted_by_host.setdefault(source.host, []).append(_Admitted(source, state, breaker))
        if not admitted_by_host:
            return results

        fetcher = fetcher or shared_fetcher(fetch_policy(registry))
        deadline = time.monotonic() + registry.checks.tick_budget_seconds
        done: queue.SimpleQueue = queue.SimpleQueue()

        def check_host(admitted: list[_Admitted]) -> None:
            # One host's sources one after the other; each result is handed over as it comes,
            # so progress shows and a crash loses only the checks not yet written.
            for item in admitted:
                late = time.monotonic() > deadline
                done.put((item, None if late else _check_one(fetcher, registry, item)))

        workers = min(registry.checks.parallel_hosts, len(admitted_by_host))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="source-check") as pool:
            futures = [pool.submit(check_host, group) for group in admitted_by_host.values()]
            for _ in range(sum(len(group) for group in admitted_by_host.values())):
                admitted, record = done.get()
                if record is None:
                    report(CheckResult(admitted.source, "deferred", admitted.state.breaker))
                    continue
                with conn:  # one transaction per check
                    _, new = record_check(conn, record, registry.checks.oldest_fiscal_year)
                report(CheckResult(
                    record.source, record.outcome, record.breaker,
                    was_failing=admitted.state.breaker.consecutive_failures > 0,
                    documents_found=len(record.documents),
                    new_documents=[d for d in new if d["status"] == "new"],
                    error=record.error, http_status=record.http_status, bytes=record.bytes,
                    duration_seconds=record.duration_seconds or 0.0))
            for future in futures:
                future.result()
    finally:
        conn.close()
    return results
