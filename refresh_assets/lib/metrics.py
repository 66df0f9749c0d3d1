"""Prometheus metrics of the refresh, read from the warehouse (and the Dagster run queue) at
each scrape.

Nothing is counted in this process: every figure is an aggregate of the ops tables, which are
append-only, so their counts only go up and are exported as counters; a restarted exporter,
or two of them, report the same values. A scrape is one warehouse connection and one
read-only transaction (one snapshot: the figures agree with each other) of aggregate queries
under a short statement timeout. When the warehouse cannot be read, the scrape still answers:
`refresh_assets_up{database="warehouse"} 0` and one log line, not an HTTP 500. The run queue
comes from a callable (the CLI reads the Dagster instance: lib/ imports no Dagster).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

import psycopg2
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from psycopg2 import sql

from refresh_assets.lib.database import (
    MARTS_SCHEMA,
    DatabaseUnavailable,
    ServerAddress,
    connect,
)
from refresh_assets.lib.refresh_outcomes import FAILURE, STAGES, SUCCESS
from refresh_assets.lib.sources.breaker import CLOSED, HALF_OPEN, OPEN
from refresh_assets.lib.sources.documents import DOC_TYPES
from refresh_assets.lib.validation import ERROR, INFO, WARNING

log = logging.getLogger(__name__)

PREFIX = "refresh_assets_"
# Every value a counter's label can take is exported from the start, at 0 if no row has it
# yet: Prometheus sees no increase() in a series that first appears at 1, so a rate-based
# alert would miss the first failure of a new kind.
CHECK_OUTCOMES = ("changed", "unchanged", "not_modified", "failed")  # ops.refresh_checks' constraint
BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)
# One city's refresh takes seconds to a minute, a run over every city some minutes
# (benchmarks/RESULTS.md); a stuck run shows in the last buckets.
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
# Prometheus gives up on a scrape after 10 s by default: a query stuck behind a lock (a
# migration) is cancelled well before, so the scrape answers with up 0 instead.
STATEMENT_TIMEOUT_MS = 2000
FILING_STATUS = (MARTS_SCHEMA, "filing_status")
SNAPSHOTS = (MARTS_SCHEMA, "city_forecast_snapshots")
QUEUED, IN_PROGRESS = "queued", "in_progress"

RunCounts = Callable[[], Mapping[str, int]]


class RefreshMetricsCollector(Collector):
    """The refresh's metrics, read afresh at each scrape. `run_counts` returns the Dagster runs
    queued and in progress ({"queued": n, "in_progress": m}), or is None to leave them out;
    `filing_status` is the (schema, view) of the filing deadlines."""

    def __init__(self, address: ServerAddress, run_counts: RunCounts | None = None, *,
                 filing_status: tuple[str, str] = FILING_STATUS):
        self._address = address
        self._run_counts = run_counts
        self._filing_status = filing_status
        # The view may not be built yet: say so once, not at every scrape.
        self._filing_status_missing_told = False

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily(
            f"{PREFIX}up", "1 if this scrape could read the database (warehouse: the ops tables "
            "and marts; dagster: the run queue), 0 if not (the reason is in the exporter's log).",
            labels=["database"])
        families: list[Metric] | None = None
        server_down = False
        try:
            families = self._warehouse_families()
        except DatabaseUnavailable as exc:
            server_down = True
            log.error("metrics: the database server cannot be reached: %s", exc)
        except psycopg2.Error as exc:
            log.error("metrics: the warehouse could not be read: %s", _one_line(exc))
        up.add_metric(["warehouse"], int(families is not None))
        yield from families or ()
        if self._run_counts is not None:
            # The Dagster database lives on the same server: when that does not answer, it is
            # not tried, so a scrape costs one connect timeout, not two.
            counts = None if server_down else self._read_run_counts()
            if counts is not None:
                yield _gauge("dagster_runs", "Dagster runs queued (waiting for the daemon's "
                             "run queue) and in progress (starting, started or canceling).",
                             ["state"], {(state,): counts.get(state, 0) for state in (QUEUED, IN_PROGRESS)})
            up.add_metric(["dagster"], int(counts is not None))
        yield up
        yield _gauge("scrape_duration_seconds", "How long this scrape took to read the databases.",
                     [], {(): time.perf_counter() - started})

    def _read_run_counts(self) -> Mapping[str, int] | None:
        try:
            return self._run_counts()
        except Exception as exc:  # whatever the instance raises, the scrape answers
            log.error("metrics: the Dagster run queue could not be read: %s: %s",
                      type(exc).__name__, _one_line(exc))
            return None

    def _warehouse_families(self) -> list[Metric]:
        # Gathered before any is yielded: a read failing half-way exports none of them.
        conn = connect(self._address, application_name="refresh_assets metrics")
        try:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                cur.execute("set local statement_timeout = %s", (STATEMENT_TIMEOUT_MS,))
                cur.execute("select to_regclass(%s), to_regclass(%s)",
                            (".".join(self._filing_status), ".".join(SNAPSHOTS)))
                filing_status_exists, snapshots_exist = (name is not None for name in cur.fetchone())
                families = [*source_families(cur), *refresh_families(cur),
                            *validation_families(cur), snapshot_days(cur, snapshots_exist)]
                if filing_status_exists:
                    families += filing_families(cur, self._filing_status)
                    self._filing_status_missing_told = False
                elif not self._filing_status_missing_told:
                    log.warning("metrics: %s does not exist (yet): the overdue filings are left "
                                "out until dbt builds it", ".".join(self._filing_status))
                    self._filing_status_missing_told = True
            return families
        finally:
            conn.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no reason given"


def _gauge(name: str, documentation: str, labels: list[str],
           values: Mapping[tuple, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=labels)
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


def _counter(name: str, documentation: str, labels: list[str], known: Iterable[tuple],
             counts: Mapping[tuple, float]) -> CounterMetricFamily:
    """A counter with a sample for each `known` label tuple (0 without rows) and each counted."""
    family = CounterMetricFamily(PREFIX + name, documentation, labels=labels)
    for label_values in sorted({*known, *counts}):
        family.add_metric(list(label_values), counts.get(label_values, 0))
    return family


def _counts(cur, query: str) -> dict[tuple, float]:
    """{label values: count} of a query whose last column is the count."""
    cur.execute(query)
    return {tuple(row[:-1]): row[-1] for row in cur.fetchall()}


def source_families(cur) -> list[Metric]:
    checks = _counts(cur, "select outcome, count(*) from ops.refresh_checks group by outcome")
    documents = _counts(cur, "select doc_type, count(*) from ops.source_documents"
                             " where status = 'new' group by doc_type")
    cur.execute("select source_id, city_key, breaker_state from ops.source_state")
    breakers = {(source_id, city, state): float(state == current)
                for source_id, city, current in cur.fetchall() for state in BREAKER_STATES}
    return [
        _counter("source_checks", "Checks of the registry's source pages by outcome: changed "
                 "(a new page, parsed), unchanged (same content), not_modified (HTTP 304), failed "
                 "(ops.refresh_checks).", ["outcome"], [(o,) for o in CHECK_OUTCOMES], checks),
        _counter("new_documents", "Documents found on source pages that operators were asked to "
                 "enter (ops.source_documents with status new), by document type.",
                 ["document_type"], [(t,) for t in DOC_TYPES], documents),
        _gauge("source_breaker_state", "Each source's circuit breaker: 1 for its current state "
               "(closed, open: not checked until its cool-down ends, half_open: one check let "
               "through), 0 for the others (ops.source_state).",
               ["source_id", "city_key", "state"], breakers),
    ]


def refresh_families(cur) -> list[Metric]:
    # Outcomes and durations in one pass over the table, the largest of them.
    bucket_columns = sql.SQL(", ").join(
        sql.SQL("count(*) filter (where duration_seconds <= {})").format(sql.Literal(le))
        for le in DURATION_BUCKETS)
    cur.execute(sql.SQL("select status, coalesce(stage, ''), count(*), count(duration_seconds),"
                        " coalesce(sum(duration_seconds), 0), {}"
                        " from ops.refresh_operations group by 1, 2").format(bucket_columns))
    outcomes: dict[tuple, int] = {}
    durations_by_status = {status: [0, 0.0, *[0] * len(DURATION_BUCKETS)] for status in (SUCCESS, FAILURE)}
    for status, stage, rows, *durations in cur.fetchall():
        outcomes[(status, stage)] = rows
        durations_by_status[status] = [a + b for a, b in zip(durations_by_status[status], durations,
                                                             strict=True)]
    durations = HistogramMetricFamily(
        f"{PREFIX}refresh_duration_seconds", "Time from the start of a refresh run to a city's "
        "outcome, per city refreshed (ops.refresh_operations.duration_seconds; outcomes "
        "recorded without a duration are left out).", labels=["outcome"])
    for status, (count, total, *cumulative) in durations_by_status.items():
        durations.add_metric([status], [*((str(le), n) for le, n in zip(DURATION_BUCKETS, cumulative,
                                                                          strict=True)),
                                        ("+Inf", count)], total)
    # A skip scan over the index (city_key, recorded_at): one probe per city for its keys,
    # one backward scan per city to its latest success, instead of reading the whole table.
    cur.execute("""
        with recursive cities (city_key) as (
            (select city_key from ops.refresh_operations order by city_key limit 1)
            union all
            select (select city_key from ops.refresh_operations
                    where city_key > cities.city_key order by city_key limit 1)
            from cities where cities.city_key is not null
        )
        select cities.city_key, extract(epoch from now() - latest.recorded_at)
        from cities cross join lateral (
            select recorded_at from ops.refresh_operations as operation
            where operation.city_key = cities.city_key and operation.status = 'success'
            order by recorded_at desc limit 1
        ) as latest
    """)
    ages = {(city,): float(age) for city, age in cur.fetchall()}
    return [
        _counter("refreshes", "Cities' refresh outcomes, one per run and city: success, or "
                 "failure with the stage it failed at (ops.refresh_operations).",
                 ["outcome", "stage"], [(SUCCESS, ""), *((FAILURE, s) for s in STAGES)], outcomes),
        durations,
        _gauge("city_last_success_age_seconds", "Seconds since each city's latest successful "
               "refresh (ops.refresh_operations); a city never refreshed has no sample.",
               ["city_key"], ages),
    ]


def validation_families(cur) -> list[Metric]:
    cur.execute("select count(*) filter (where errors > 0), count(*) filter (where errors = 0),"
                " coalesce(sum(errors), 0), coalesce(sum(warnings), 0), coalesce(sum(infos), 0)"
                " from ops.city_validations")
    failed, passed, errors, warnings, infos = cur.fetchone()
    return [
        _counter("city_validations", "Validations of a city's entries, one per run and city: "
                 "failed (an error-rule issue, the city is held back) or passed (ops.city_validations).",
                 ["result"], [], {("failed",): failed, ("passed",): passed}),
        _counter("validation_issues", "Issues found by the validations, by severity: error, "
                 "warning, info (ops.validation_results, counted per validation in "
                 "ops.city_validations).",
                 ["severity"], [], {(ERROR,): errors, (WARNING,): warnings, (INFO,): infos}),
    ]


def snapshot_days(cur, table_exists: bool) -> Metric:
    days = 0
    if table_exists:
        # A skip scan over the primary key (snapshot_date first): one index probe per day
        # kept, where count(distinct) would read every row (millions at 730 days).
        cur.execute(sql.SQL("""
            with recursive days (day) as (
                (select snapshot_date from {table} order by snapshot_date limit 1)
                union all
                select (select snapshot_date from {table}
                        where snapshot_date > days.day order by snapshot_date limit 1)
                from days where days.day is not null
            )
            select count(day) from days
        """).format(table=sql.Identifier(*SNAPSHOTS)))
        days = cur.fetchone()[0]
    return _gauge("forecast_snapshot_days", "Days of forecast snapshots kept in "
                  "marts.city_forecast_snapshots (0 before the first snapshot creates the table).",
                  [], {(): days})


def filing_families(cur, view: tuple[str, str]) -> list[Metric]:
    # The view has one row per city and document type; grouped all the same, as a sample
    # given twice would make Prometheus refuse the whole scrape.
    cur.execute(sql.SQL("""
        select city_key, document_type, coalesce(bool_or(is_overdue), false),
               coalesce(max(days_overdue) filter (where is_overdue), 0)
        from {view} where city_key is not null and document_type is not null
        group by city_key, document_type
    """).format(view=sql.Identifier(*view)))
    rows = cur.fetchall()
    overdue = {(doc_type,): 0 for doc_type in DOC_TYPES}
    for _, doc_type, is_overdue, _ in rows:
        overdue[(doc_type,)] = overdue.get((doc_type,), 0) + is_overdue
    return [
        _gauge("overdue_filings", "Cities whose filing of this document type is overdue "
               "(marts.filing_status).", ["document_type"], overdue),
        _gauge("city_filing_overdue_days", "Days since each city's next filing of this document "
               "type was due, 0 if none is overdue (marts.filing_status.days_overdue).",
               ["city_key", "document_type"],
               {(city, doc_type): float(days) for city, doc_type, _, days in rows}),
    ]
