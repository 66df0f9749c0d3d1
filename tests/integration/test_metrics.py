"""The Prometheus metrics: the collector's figures against rows inserted into the test
warehouse; `refresh-assets metrics serve` scraped by a real Prometheus server on 127.0.0.1;
the alert rules checked and unit-tested by promtool.

The session's database is shared with other tests, so counters are compared before and
after this module's rows are inserted, and per-city figures use cities of its own."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import psycopg2
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from refresh_assets.lib.database import ServerAddress, forecast_snapshot_days, warehouse_connection
from refresh_assets.lib.metrics import DURATION_BUCKETS, RefreshMetricsCollector
from refresh_assets.settings import PROJECT_DIR
from tests.conftest import VENV_BIN, free_port
from tests.forecast_fixtures import dbt_build

pytestmark = pytest.mark.integration

RULES = PROJECT_DIR / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = PROJECT_DIR / "ops" / "prometheus" / "alerts_test.yml"
EXAMPLE_CONFIG = PROJECT_DIR / "ops" / "prometheus" / "prometheus.yml"
CITY = "metrics-test"  # every row of this module has a city key that starts so
FILING_STATUS = ("metrics_test", "filing_status")
DAY = 86400

OPS_ROWS = f"""
insert into ops.refresh_checks (source_id, city_key, url, outcome)
select '{CITY}-a/finance', '{CITY}-a', 'http://127.0.0.1/finance', outcome
from unnest(array['failed', 'failed', 'failed', 'changed', 'not_modified', 'not_modified']) as outcome;

insert into ops.source_documents (source_id, city_key, doc_type, fiscal_year, url, title, status)
values ('{CITY}-a/finance', '{CITY}-a', 'acfr', 2023, 'http://127.0.0.1/a-2023.pdf', 'ACFR', 'new'),
       ('{CITY}-a/finance', '{CITY}-a', 'acfr', 2022, 'http://127.0.0.1/a-2022.pdf', 'ACFR', 'new'),
       ('{CITY}-a/calpers', '{CITY}-a', 'calpers_valuation', 2023, 'http://127.0.0.1/v.pdf', 'V', 'new'),
       ('{CITY}-a/finance', '{CITY}-a', 'acfr', 2015, 'http://127.0.0.1/a.pdf', 'CAFR', 'out_of_scope');

insert into ops.refresh_operations (run_id, city_key, trigger, status, stage, duration_seconds, recorded_at)
values ('{CITY}-run-1', '{CITY}-a', 'manual', 'success', null, 4, now() - interval '3 days'),
       -- a later failure leaves the age of a city's latest success as it was
       ('{CITY}-run-2', '{CITY}-a', 'manual', 'failure', 'scoring', 40, now()),
       ('{CITY}-run-1', '{CITY}-b', 'manual', 'success', null, 60, now() - interval '2 hours'),
       ('{CITY}-run-2', '{CITY}-b', 'manual', 'success', null, 400, now() - interval '1 hour'),
       -- a failure recorded without a duration counts, and is not in the histogram
       ('{CITY}-run-1', '{CITY}-c', 'manual', 'failure', 'validation', null, now()),
       ('{CITY}-run-1', '{CITY}-stale', 'manual', 'success', null, 30, now() - interval '10 days');

insert into ops.city_validations (run_id, city_key, errors, warnings, infos)
values ('{CITY}-run-1', '{CITY}-a', 0, 2, 1),
       ('{CITY}-run-1', '{CITY}-c', 3, 1, 0),
       ('{CITY}-run-2', '{CITY}-c', 1, 0, 0);

insert into ops.source_state (source_id, city_key, url, breaker_state)
values ('{CITY}-a/finance', '{CITY}-a', 'http://127.0.0.1/finance', 'open'),
       ('{CITY}-a/calpers', '{CITY}-a', 'http://127.0.0.1/calpers', 'closed');
"""

# The columns of the dbt view marts.filing_status, in a schema of this module's own.
FILING_STATUS_VIEW = f"""
create schema if not exists metrics_test;
create or replace view metrics_test.filing_status as
select * from (values
    ('{CITY}-a', 'A', 'acfr', 2022, 2023, date '2024-03-31', true, 45),
    ('{CITY}-a', 'A', 'calpers_valuation', 2023, 2023, date '2024-06-30', false, 0),
    ('{CITY}-b', 'B', 'acfr', 2023, 2023, date '2024-03-31', false, null)
) as status (city_key, city, document_type, last_received_fiscal_year, expected_fiscal_year,
             due_date, is_overdue, days_overdue);
"""


def execute(address: ServerAddress, statements: str) -> None:
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute(statements)


def fetch_one(address: ServerAddress, query: str):
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def remove_rows(address: ServerAddress) -> None:
    execute(address, f"""
        delete from ops.source_documents where city_key like '{CITY}%';
        delete from ops.refresh_checks where city_key like '{CITY}%';
        delete from ops.refresh_operations where city_key like '{CITY}%';
        delete from ops.city_validations where city_key like '{CITY}%';
        delete from ops.source_state where city_key like '{CITY}%';
        drop schema if exists metrics_test cascade;
    """)


@pytest.fixture
def ops_rows(warehouse: ServerAddress) -> Iterator[ServerAddress]:
    """This module's rows in the ops tables and its filing status view; removed afterwards."""
    remove_rows(warehouse)
    execute(warehouse, OPS_ROWS + FILING_STATUS_VIEW)
    try:
        yield warehouse
    finally:
        remove_rows(warehouse)


@pytest.fixture(scope="module")
def dbt_filing_status(warehouse: ServerAddress, tmp_path_factory) -> ServerAddress:
    """dbt's marts.filing_status, the view the exporter reads (a view: it follows the rows)."""
    dbt_build(tmp_path_factory.mktemp("dbt"), "+filing_status")
    return warehouse


def overdue_in_view(address: ServerAddress) -> dict[tuple[str, str], int]:
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute("select city_key, document_type, days_overdue from marts.filing_status"
                    " where is_overdue")
        return {(city, doc_type): days for city, doc_type, days in cur.fetchall()}


def scrape(collector: RefreshMetricsCollector) -> dict[tuple[str, frozenset], float]:
    """The samples of one scrape, through the text exposition Prometheus reads."""
    registry = CollectorRegistry()
    registry.register(collector)
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            # An empty label is no label to Prometheus.
            key = (sample.name, frozenset((k, v) for k, v in sample.labels.items() if v))
            # Prometheus refuses a whole scrape that holds a sample twice.
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def sample(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples) -> set[str]:
    return {name for name, _ in samples}


def test_the_collector_reports_what_the_ops_tables_hold(warehouse):
    collector = RefreshMetricsCollector(warehouse, lambda: {"queued": 2, "in_progress": 1},
                                        filing_status=FILING_STATUS)
    remove_rows(warehouse)
    before = scrape(collector)
    execute(warehouse, OPS_ROWS + FILING_STATUS_VIEW)
    try:
        after = scrape(collector)
    finally:
        remove_rows(warehouse)

    def added(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    checks = "refresh_assets_source_checks_total"
    assert [added(checks, outcome=o) for o in ("failed", "changed", "not_modified", "unchanged")] \
        == [3, 1, 2, 0]
    assert added("refresh_assets_new_documents_total", document_type="acfr") == 2
    assert added("refresh_assets_new_documents_total", document_type="calpers_valuation") == 1

    refreshes = "refresh_assets_refreshes_total"
    assert added(refreshes, outcome="success") == 4
    assert added(refreshes, outcome="failure", stage="scoring") == 1
    assert added(refreshes, outcome="failure", stage="validation") == 1
    assert added(refreshes, outcome="failure", stage="report") == 0

    # Successes of 4, 60, 400 and 30 s; one failure of 40 s, one without a duration.
    histogram = "refresh_assets_refresh_duration_seconds"
    success_buckets = {le: added(f"{histogram}_bucket", outcome="success", le=str(le))
                       for le in DURATION_BUCKETS}
    assert success_buckets == {5.0: 1, 15.0: 1, 30.0: 2, 60.0: 3, 120.0: 3, 300.0: 3, 600.0: 4,
                               1200.0: 4, 1800.0: 4, 3600.0: 4}
    assert added(f"{histogram}_bucket", outcome="success", le="+Inf") == 4
    assert added(f"{histogram}_count", outcome="success") == 4
    assert added(f"{histogram}_sum", outcome="success") == pytest.approx(494)
    assert added(f"{histogram}_bucket", outcome="failure", le="30.0") == 0
    assert added(f"{histogram}_bucket", outcome="failure", le="60.0") == 1
    assert added(f"{histogram}_count", outcome="failure") == 1

    age = "refresh_assets_city_last_success_age_seconds"
    assert sample(after, age, city_key=f"{CITY}-a") == pytest.approx(3 * DAY, abs=120)
    assert sample(after, age, city_key=f"{CITY}-b") == pytest.approx(3600, abs=120)
    assert sample(after, age, city_key=f"{CITY}-c") is None  # never refreshed successfully

    assert added("refresh_assets_city_validations_total", result="failed") == 2
    assert added("refresh_assets_city_validations_total", result="passed") == 1
    issues = "refresh_assets_validation_issues_total"
    assert [added(issues, severity=s) for s in ("error", "warning", "info")] == [4, 3, 1]

    breaker = "refresh_assets_source_breaker_state"
    finance = {"source_id": f"{CITY}-a/finance", "city_key": f"{CITY}-a"}
    calpers = {"source_id": f"{CITY}-a/calpers", "city_key": f"{CITY}-a"}
    assert [sample(after, breaker, **finance, state=s) for s in ("closed", "open", "half_open")] \
        == [0, 1, 0]
    assert [sample(after, breaker, **calpers, state=s) for s in ("closed", "open", "half_open")] \
        == [1, 0, 0]

    assert sample(after, "refresh_assets_overdue_filings", document_type="acfr") == 1
    assert sample(after, "refresh_assets_overdue_filings", document_type="calpers_valuation") == 0
    overdue_days = "refresh_assets_city_filing_overdue_days"
    assert sample(after, overdue_days, city_key=f"{CITY}-a", document_type="acfr") == 45
    assert sample(after, overdue_days, city_key=f"{CITY}-a", document_type="calpers_valuation") == 0
    assert sample(after, overdue_days, city_key=f"{CITY}-b", document_type="acfr") == 0

    assert sample(after, "refresh_assets_forecast_snapshot_days") == len(forecast_snapshot_days(warehouse))
    assert sample(after, "refresh_assets_dagster_runs", state="queued") == 2
    assert sample(after, "refresh_assets_dagster_runs", state="in_progress") == 1
    assert sample(after, "refresh_assets_up", database="warehouse") == 1
    assert sample(after, "refresh_assets_up", database="dagster") == 1


def test_a_missing_filing_status_view_is_left_out_with_one_warning(warehouse, caplog):
    collector = RefreshMetricsCollector(warehouse, filing_status=("metrics_test", "no_such_view"))
    with caplog.at_level(logging.WARNING, logger="refresh_assets.lib.metrics"):
        first, second = scrape(collector), scrape(collector)
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: metrics_test.no_such_view does not exist (yet): the overdue filings are left "
        "out until dbt builds it"]
    for samples in (first, second):
        assert sample(samples, "refresh_assets_up", database="warehouse") == 1
        assert not names(samples) & {"refresh_assets_overdue_filings",
                                     "refresh_assets_city_filing_overdue_days"}
        assert "refresh_assets_source_checks_total" in names(samples)


def test_the_overdue_filings_are_those_of_dbt_s_filing_status(ops_rows, dbt_filing_status):
    samples = scrape(RefreshMetricsCollector(ops_rows))
    overdue = overdue_in_view(ops_rows)
    # This module's city last filed an ACFR for 2023 and a valuation of 2023: both are late
    # from 2025 on.
    assert {key for key in overdue if key[0].startswith(CITY)} == {
        (f"{CITY}-a", "acfr"), (f"{CITY}-a", "calpers_valuation")}
    per_city = {}
    for (name, label_set), value in samples.items():
        if name == "refresh_assets_city_filing_overdue_days" and value > 0:
            labels = dict(label_set)
            per_city[(labels["city_key"], labels["document_type"])] = value
    assert per_city == overdue
    for doc_type in ("acfr", "calpers_valuation"):
        assert sample(samples, "refresh_assets_overdue_filings", document_type=doc_type) \
            == sum(1 for _, t in overdue if t == doc_type)


def test_an_unreachable_server_is_up_0_and_a_log_line_not_an_error(warehouse, caplog):
    nowhere = ServerAddress("127.0.0.1", free_port(), warehouse.user, warehouse.password)

    def run_counts():
        raise AssertionError("the Dagster database is on the server that did not answer")

    with caplog.at_level(logging.ERROR, logger="refresh_assets.lib.metrics"):
        samples = scrape(RefreshMetricsCollector(nowhere, run_counts))
    assert sample(samples, "refresh_assets_up", database="warehouse") == 0
    assert sample(samples, "refresh_assets_up", database="dagster") == 0
    assert names(samples) == {"refresh_assets_up", "refresh_assets_scrape_duration_seconds"}
    [record] = caplog.records
    assert "nothing is listening on 127.0.0.1" in record.getMessage()


def test_a_failing_run_queue_read_leaves_the_warehouse_figures(warehouse, caplog):
    def run_counts():
        raise RuntimeError("DagsterHomeNotSetError: DAGSTER_HOME is not set")

    with caplog.at_level(logging.ERROR, logger="refresh_assets.lib.metrics"):
        samples = scrape(RefreshMetricsCollector(warehouse, run_counts))
    assert sample(samples, "refresh_assets_up", database="dagster") == 0
    assert sample(samples, "refresh_assets_up", database="warehouse") == 1
    assert "refresh_assets_dagster_runs" not in names(samples)
    assert "refresh_assets_refreshes_total" in names(samples)
    assert "RuntimeError: DagsterHomeNotSetError" in caplog.records[0].getMessage()


def test_a_query_stuck_behind_a_lock_is_cut_by_the_statement_timeout(warehouse, caplog):
    """A migration holding a table must not hang the scrape past Prometheus's timeout."""
    locker = psycopg2.connect(warehouse.libpq_url())
    try:
        with locker.cursor() as cur:
            cur.execute("lock table ops.refresh_checks in access exclusive mode")
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="refresh_assets.lib.metrics"):
            samples = scrape(RefreshMetricsCollector(warehouse))
        elapsed = time.monotonic() - started
    finally:
        locker.rollback()
        locker.close()
    assert sample(samples, "refresh_assets_up", database="warehouse") == 0
    assert "refresh_assets_source_checks_total" not in names(samples)
    assert elapsed < 5
    assert "statement timeout" in caplog.records[0].getMessage()


def test_the_dagster_run_queue_is_counted_from_the_instance(warehouse, tmp_path, monkeypatch):
    """Runs of a throwaway instance (not the session's, whose queued runs a test's daemon
    would try to launch)."""
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
    from dagster._core.remote_origin import (
        GrpcServerCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )

    from refresh_assets.cli.metrics import DagsterRunCounts

    (tmp_path / "dagster.yaml").write_text("")  # the default instance: SQLite in the folder
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    # A queued run must name the code location the daemon would launch it from.
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(
        GrpcServerCodeLocationOrigin(host="127.0.0.1", port=1, location_name="test"), "repo"),
        "refresh_city")
    statuses = [DagsterRunStatus.QUEUED] * 3 + [DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING,
                                                DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
    counts = DagsterRunCounts(warehouse)
    with DagsterInstance.get() as instance:
        assert counts() == {"queued": 0, "in_progress": 0}
        for status in statuses:
            instance.add_run(DagsterRun(job_name="refresh_city", status=status,
                                        remote_job_origin=origin))
        assert counts() == {"queued": 3, "in_progress": 2}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for(what: str, probe, processes: list[subprocess.Popen], timeout: float = 120):
    """Calls `probe` until it returns something true; fails if a process ended meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"{process.args[0]} exited {process.returncode} while waiting for {what}")
        try:
            result = probe()
        except (urllib.error.URLError, ConnectionError):
            result = None
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: run `make test-deps` (Debian: apt-get install prometheus)")
    return found


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_a_real_prometheus_scrapes_the_exporter_and_evaluates_the_rules(ops_rows, dbt_filing_status,
                                                                         tmp_path):
    exporter_port, prometheus_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "refresh_assets",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }))
    api = f"http://127.0.0.1:{prometheus_port}/api/v1"
    with open(tmp_path / "exporter.log", "w") as exporter_log, \
            open(tmp_path / "prometheus.log", "w") as prometheus_log:
        exporter = subprocess.Popen(
            [str(VENV_BIN / "refresh-assets"), "metrics", "serve", "--port", str(exporter_port)],
            env=os.environ.copy(), stdout=exporter_log, stderr=subprocess.STDOUT)
        prometheus = subprocess.Popen(
            [program("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=prometheus_log, stderr=subprocess.STDOUT)
        processes = [exporter, prometheus]
        try:
            def target_up():
                targets = get_json(f"{api}/targets")["data"]["activeTargets"]
                return targets and targets[0]["health"] == "up"

            wait_for("the exporter's target to be up", target_up, processes)
            query = 'refresh_assets_refreshes_total{outcome="success"}'

            def scraped():
                result = get_json(f"{api}/query?" + urllib.parse.urlencode({"query": query}))
                return result["data"]["result"]

            [series] = wait_for(query, scraped, processes)
            in_database = fetch_one(ops_rows, "select count(*) from ops.refresh_operations"
                                              " where status = 'success'")
            assert float(series["value"][1]) == in_database > 0

            def rules_evaluated():
                groups = get_json(f"{api}/rules")["data"]["groups"]
                rules = [rule for group in groups for rule in group["rules"]]
                return rules if all(rule["health"] != "unknown" for rule in rules) else None

            rules = wait_for("the alert rules' first evaluation", rules_evaluated, processes)
            assert {rule["name"]: rule["health"] for rule in rules} == {
                rule["alert"]: "ok" for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}

            # Fed by the real exposition: the city last refreshed 10 days ago is stale at once,
            # the open breaker waits its 2 hours, the late filings of marts.filing_status fire.
            expected = {("CityDataStale", "firing", f"{CITY}-stale", None),
                        ("SourceDown", "pending", f"{CITY}-a", f"{CITY}-a/finance")}
            expected |= {("FilingOverdue", "firing", city, doc_type)
                         for city, doc_type in overdue_in_view(ops_rows) if city.startswith(CITY)}

            def alerts_on_this_module():
                alerts = get_json(f"{api}/alerts")["data"]["alerts"]
                found = {(a["labels"]["alertname"], a["state"], a["labels"]["city_key"],
                          a["labels"].get("source_id", a["labels"].get("document_type")))
                         for a in alerts if a["labels"].get("city_key", "").startswith(CITY)}
                return found if len(found) >= len(expected) else None

            assert wait_for("the alerts on this module's cities", alerts_on_this_module,
                            processes) == expected
        finally:
            for process in processes:
                stop(process)
    assert exporter.returncode is not None and prometheus.returncode is not None


def test_the_alert_rules_pass_promtool():
    promtool = program("promtool")
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)],
                    ["check", "config", str(EXAMPLE_CONFIG)]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 0, f"promtool {' '.join(command)}:\n{result.stdout}{result.stderr}"
