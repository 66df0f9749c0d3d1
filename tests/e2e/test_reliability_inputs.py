"""Reliability of the inputs: what operators and a full or broken disk do to them, each test
asserting that nothing was lost and nothing done twice.

1. Two operators save the same city's FY2020 entry within a second, through the path users
   rely on: the entries folder, the entries sensor and the run queue of `dagster-daemon run`
   (as a service manager runs it). Saves that both fall between two sensor ticks coalesce
   into one refresh of the later file; the test makes the harder case: the first save as a
   sensor tick starts, the second as soon as that tick has read the first (0.9 s later at
   most; the pair is tried again, up to 3 times, when the tick read the files before the
   first save). Two refreshes are then requested for the city within a second, and the run
   records show the second waiting in the queue (the tag limit refresh/city) until the first
   had ended: no two runs of the city ever overlap. The later version wins: it is stored
   once, it is the newest, and every mart shows it; the first version is stored too, older
   (the entries sensor stores each version it sees).
2. The documents folder full, then unwritable, while the `source_documents` step downloads
   two cities' new documents in one run (as a backfill or a range launched from the UI
   runs them), with a real HTTP server on 127.0.0.1 serving the pages and PDFs and a real
   SMTP server. Full: the run's process may not grow a file past 1 MB (RLIMIT_FSIZE, which
   fails a write mid-document as a full disk does, and does so as root too), so one city's
   3 MB document fails and the other city's small one is stored. Unwritable: a regular file
   stands where the folder should be (root ignores permission bits, not that). Each failed
   download is one line naming the folder and what to do, logged as an error, recorded in
   ops.source_documents and in the step's metadata; the run goes on, every operator email
   goes out, no partial file is left, and the next sensor tick checks both pages as usual.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from refresh_assets.lib.cities import city_key
from refresh_assets.lib.entries import EntryFile, known_figures, write_entry_file
from refresh_assets.lib.run_tags import CITY as CITY_TAG
from refresh_assets.settings import PROJECT_DIR
from tests import http_fixtures
from tests.conftest import run_cli
from tests.integration.test_source_documents import REGISTRY, SourceSensor, finance_page
from tests.reliability_fixtures import (
    daemon_environment,
    instance_of,
    rows,
    running_daemon,
    sensor_state,
    unfinished_runs,
    wait_until,
    warehouse_url,
)
from tests.smtp_fixtures import Inbox, smtp_server, use_smtp_server
from tests.ui_fixtures import own_instance

served_site = http_fixtures.served_site

# -- 1. two operators, one city, within a second -----------------------------------------------

CITY, CITY_KEY, YEAR = "Vallejo", "vallejo", 2020
ENTRY_SENSOR = "entry_files_sensor"
DAEMON_SECONDS = 300  # a daemon start (the code location loads) and a run, on a busy machine
SAVES_APART = 0.9  # seconds at most between the two operators' saves
ATTEMPTS = 3  # pairs of saves tried until a sensor tick falls between the two
CITY_MARTS = ("city_forecast", "city_fiscal_health", "city_risk_scores")

def entry(entries: Path, operator: str, gf_revenues: int) -> EntryFile:
    """One operator's FY2020 entry for the city, as `refresh-assets enter` makes it: the
    figures the file holds now, with the general fund revenues changed."""
    figures = {**known_figures(entries, CITY, YEAR), "gf_revenues": gf_revenues}
    return EntryFile(city=CITY, fiscal_year=YEAR, source={"title": "Vallejo ACFR FY2019-20"},
                     entered_by=operator, entered_at=datetime.now(UTC), figures=figures)


def read_since_written(path: Path) -> bool:
    """Whether the file was read after its last write: with `relatime` (Linux's default) the
    first read after a write moves its access time up to its modification time or later."""
    stat = path.stat()
    return stat.st_atime_ns >= stat.st_mtime_ns


def last_tick_start(instance: dg.DagsterInstance, state) -> float | None:
    """When the sensor's latest tick started (the daemon records it before evaluating)."""
    current = instance.get_instigator_state(state.instigator_origin_id, state.selector_id)
    return current.instigator_data.last_tick_start_timestamp


def city_runs(instance: dg.DagsterInstance, since: float = 0.0) -> list[dg.RunRecord]:
    """The city's refresh runs created after `since` (a Unix time), oldest first."""
    records = instance.get_run_records(dg.RunsFilter(job_name="refresh_city",
                                                     tags={CITY_TAG: CITY_KEY}))
    return sorted((r for r in records if r.create_timestamp.timestamp() > since),
                  key=lambda r: r.create_timestamp)


def launched_at(instance: dg.DagsterInstance, run_id: str) -> float:
    """When the run queue took the run out of the queue and launched it (RUN_STARTING)."""
    [record] = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_STARTING).records
    return record.event_log_entry.timestamp


def cursor_checksum(instance: dg.DagsterInstance) -> str | None:
    """The checksum of the city's FY2020 file in the entries sensor's cursor."""
    state = sensor_state(instance, ENTRY_SENSOR)
    cursor = state.instigator_data.cursor if state and state.instigator_data else None
    return json.loads(cursor).get(f"{CITY_KEY}/{YEAR}.yaml", [None] * 3)[2] if cursor else None


def mart_revenues(url: str) -> int | None:
    """The city's FY2020 revenues in marts.city_fiscal_years, a table the automation sensor's
    first dbt build creates on this new instance (None until then)."""
    try:
        found = rows(url, "select gf_revenues::bigint from marts.city_fiscal_years"
                          " where city_key = %s and fiscal_year = %s", CITY_KEY, YEAR)
    except psycopg2.errors.UndefinedTable:
        return None
    return found[0][0] if found else None


def city_marts_exist(url: str) -> bool:
    """Whether the views over the city's current scores and projection exist: automation
    creates them on this new instance once their staging views' checks have passed, a tick
    after the tables' build."""
    return all(rows(url, "select to_regclass(%s) is not null", f"marts.{mart}")[0][0]
               for mart in CITY_MARTS)


@pytest.mark.e2e
def test_two_operators_saving_one_city_within_a_second_queue_one_refresh_and_the_later_wins(
        tmp_path):
    with own_instance(tmp_path) as env:
        entries = Path(env["REFRESH_ENTRIES_DIR"])
        shutil.copytree(PROJECT_DIR / "entries" / CITY_KEY, entries / CITY_KEY)
        run_cli("dbt", "prepare", env=env)  # the database first, as `refresh-assets ui` does
        url = warehouse_url(env)
        with instance_of(env) as instance, \
                running_daemon(daemon_environment(env), tmp_path / "daemon.log") as daemon:
            def settled(what: str, probe) -> None:
                wait_until(what, lambda: (probe() and not unfinished_runs(instance))
                           or not daemon.alive(), DAEMON_SECONDS,
                           lambda: (unfinished_runs(instance), daemon.log_tail()))
                assert daemon.alive(), daemon.log_tail()

            settled("the city's first refresh", lambda: [r.dagster_run.status for r in city_runs(
                instance)] == [dg.DagsterRunStatus.SUCCESS])

            def two_saves(first_revenues: int, later_revenues: int):
                """Operator A's save as an entries sensor tick starts, operator B's as soon as
                that tick has read A's file (0.9 s later at most); returns the seconds between
                them and the city's runs since, once the later save is in the marts and every
                run has ended."""
                first = entry(entries, "operator-a", first_revenues)
                later = entry(entries, "operator-b", later_revenues)
                time.sleep(0.05)  # the reads above are older than the saves below
                state = sensor_state(instance, ENTRY_SENSOR)
                ticked = last_tick_start(instance, state)
                wait_until("an entries sensor tick", lambda: last_tick_start(instance, state)
                           != ticked, 60, daemon.log_tail, interval=0.01)
                first_saved_at = time.time()
                path = write_entry_file(entries, first)
                while time.time() < first_saved_at + SAVES_APART and not read_since_written(path):
                    time.sleep(0.005)
                write_entry_file(entries, later)
                apart = time.time() - first_saved_at
                later_checksum = hashlib.sha256(path.read_bytes()).hexdigest()
                settled("the later save in the marts", lambda: (
                    cursor_checksum(instance) == later_checksum
                    and mart_revenues(url) == later_revenues and city_marts_exist(url)))
                return apart, city_runs(instance, since=first_saved_at)

            base = int(known_figures(entries, CITY, YEAR)["gf_revenues"])
            for attempt in range(1, ATTEMPTS + 1):
                first_revenues, later_revenues = base + 2 * attempt - 1, base + 2 * attempt
                apart, pair = two_saves(first_revenues, later_revenues)
                if len(pair) == 2:  # a tick fell between the saves, as this test needs
                    break
            assert len(pair) == 2, f"no sensor tick between the saves in {ATTEMPTS} attempts"
            assert apart < 1.0, apart

            # One refresh queued behind the other: the second was requested while the first
            # ran, left the queue only once it had ended, and no two runs of the city ever
            # overlapped (the first refresh and any earlier attempt included).
            ran, waited = pair
            assert [r.dagster_run.status for r in pair] == [dg.DagsterRunStatus.SUCCESS] * 2
            assert waited.create_timestamp.timestamp() < ran.end_time
            assert launched_at(instance, waited.dagster_run.run_id) >= ran.end_time
            windows = sorted((r.start_time, r.end_time) for r in city_runs(instance))
            assert all(later_start >= earlier_end for (_, earlier_end), (later_start, _)
                       in itertools.pairwise(windows)), windows
            assert len({r.dagster_run.tags["dagster/run_key"] for r in city_runs(instance)}) \
                == len(windows)

        # The later version is stored once and is the city's newest; every mart shows it.
        [(later_version, operator)] = rows(
            url, "select entry_version, entered_by from raw.fiscal_entries where city_key = %s"
                 " and fiscal_year = %s and gf_revenues = %s", CITY_KEY, YEAR, later_revenues)
        assert operator == "operator-b"
        assert rows(url, "select max(entry_version) from raw.fiscal_entries where city_key = %s",
                    CITY_KEY) == [(later_version,)]
        assert rows(url, "select gf_revenues::bigint, entry_version from marts.city_fiscal_years"
                         " where city_key = %s and fiscal_year = %s", CITY_KEY, YEAR) == [
            (later_revenues, later_version)]
        for mart in CITY_MARTS:
            assert rows(url, f"select max(entry_version) from marts.{mart} where city_key = %s",
                        CITY_KEY) == [(later_version,)], mart
        # Each run recorded its outcome once, a success.
        assert sorted(rows(url, "select run_id, status from ops.refresh_operations"
                                " where run_id in (%s, %s) and city_key = %s",
                           ran.dagster_run.run_id, waited.dagster_run.run_id, CITY_KEY)) == sorted(
            (r.dagster_run.run_id, "success") for r in pair)

        # Both versions stored: the first save must be there too, older than the later one.
        first_versions = rows(url, "select entry_version from raw.fiscal_entries where city_key"
                                   " = %s and fiscal_year = %s and gf_revenues = %s",
                              CITY_KEY, YEAR, first_revenues)
        # The run reads the file seconds later, when it holds the second save: the sensor
        # stores each version it sees (defs/sensors.py).
        [(first_version,)] = first_versions
        assert first_version < later_version


# -- 2. the documents folder full or unwritable ------------------------------------------------

DOCUMENT_TITLE = "Annual Comprehensive Financial Report FY 2023-24"
FILE_LIMIT = 1_000_000  # bytes: the largest file the run's process may write when "full"
BIG_PDF = b"%PDF-1.7\n" + b"x" * 3_000_000
SMALL_PDF = b"%PDF-1.7\n" + b"y" * 20_000
NOTICE = "New ACFR to enter: {}, fiscal year 2024"
# A run of the source_documents job over two cities in one process, its files capped at
# argv[1] bytes (Python ignores SIGXFSZ: a write past the cap fails with EFBIG).
RUN_WITH_FILE_LIMIT = """
import resource, sys
import dagster as dg
from refresh_assets.definitions import defs

limit, first, last = int(sys.argv[1]), sys.argv[2], sys.argv[3]
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_job_def("source_documents").execute_in_process(
        instance=instance, raise_on_error=False,
        tags={"dagster/asset_partition_range_start": first,
              "dagster/asset_partition_range_end": last})
print(result.run_id)
"""


@pytest.fixture
def inbox(monkeypatch) -> Iterator[Inbox]:
    with smtp_server() as (handler, port):
        use_smtp_server(monkeypatch, port)
        yield handler


def chunked(body: bytes, size: int = 4096) -> bytes:
    """`body` in HTTP/1.1 chunked transfer coding, `size` bytes a chunk, as sites that stream
    their documents send them (the client then hands the body over chunk by chunk)."""
    pieces = [body[start:start + size] for start in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def serve_new_documents(site, tmp_path: Path, monkeypatch, documents: dict[str, bytes]) -> Path:
    """Each city's finance page links one new ACFR (FY 2023-24), served as a PDF in 4 KiB
    chunks; the registry lists those pages with downloads on, and the environment points at
    it. Returns the documents folder the environment names (not created)."""
    for city, pdf in documents.items():
        key = city_key(city)
        site.route(f"/{key}/finance", finance_page((DOCUMENT_TITLE, f"/docs/{key}-acfr-2024.pdf")))
        # The test server adds a Content-Length, which the client ignores for chunked replies.
        site.route(f"/docs/{key}-acfr-2024.pdf", chunked(pdf), content_type="application/pdf",
                   headers={"Transfer-Encoding": "chunked"})
    registry = tmp_path / "sources.yaml"
    cities = "\n".join(f"  {city}:\n    finance_pages: [{site.url(f'/{city_key(city)}/finance')}]"
                       for city in documents)
    registry.write_text(REGISTRY.format(cities=cities).replace(
        "  breaker:", "  downloads: {enabled: true, max_megabytes: 10}\n  breaker:"))
    documents_dir = tmp_path / "documents"
    monkeypatch.setenv("REFRESH_SOURCES_FILE", str(registry))
    monkeypatch.setenv("REFRESH_DOCUMENTS_DIR", str(documents_dir))
    return documents_dir


def downloads(address, cities: list[str]) -> dict[str, tuple]:
    """Each city's document: download status, error, path and checksum."""
    return {city: (status, error, path, sha) for city, status, error, path, sha in rows(
        address.libpq_url(), "select city_key, download_status, download_error, download_path,"
                             " download_sha256 from ops.source_documents where city_key = any(%s)",
        cities)}


def step_record(instance: dg.DagsterInstance, run_id: str) -> tuple[dict[str, dict], list[str]]:
    """The step's materialization metadata by city partition, and the error lines it logged."""
    materializations = [r.event_log_entry.asset_materialization for r in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records]
    errors = [entry.user_message for entry in instance.all_logs(run_id)
              if entry.level == logging.ERROR and not entry.is_dagster_event]
    return {m.partition: {name: value.value for name, value in m.metadata.items()}
            for m in materializations}, errors


def checks_of(address, cities: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for city, outcome in rows(address.libpq_url(), "select city_key, outcome from ops.refresh_checks"
                                                   " where city_key = any(%s) order by check_id",
                              cities):
        found.setdefault(city, []).append(outcome)
    return found


@pytest.mark.integration
def test_a_full_documents_folder_fails_the_big_document_alone_and_the_other_is_stored(
        warehouse, dbt_manifest, served_site, inbox, tmp_path, monkeypatch):
    big, small = "Reedley", "Rialto"  # adjacent in the city list: one partition range
    documents = serve_new_documents(served_site, tmp_path, monkeypatch,
                                    {big: BIG_PDF, small: SMALL_PDF})
    keys = [city_key(big), city_key(small)]
    with dg.DagsterInstance.get() as instance:
        sensor = SourceSensor(instance, tmp_path / "sources.yaml", documents, warehouse)
        # The real sensor: both pages checked, both documents new, a run asked for each city.
        assert sorted(r.partition_key for r in sensor.tick().run_requests) == keys

        job = subprocess.run([sys.executable, "-c", RUN_WITH_FILE_LIMIT, str(FILE_LIMIT), *keys],
                             capture_output=True, text=True, timeout=300, env=os.environ.copy())
        assert job.returncode == 0, job.stdout + job.stderr
        run_id = job.stdout.split()[-1]
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS, job.stderr
        by_city, logged_errors = step_record(instance, run_id)
        assert sorted(by_city) == keys
        metadata = by_city[keys[0]]  # the step's: the same on each city's materialization

        found = downloads(warehouse, keys)
        big_url = served_site.url(f"/docs/{keys[0]}-acfr-2024.pdf")
        error = (f"{big_url}: cannot write to {documents}: File too large; the document is over"
                 " the largest file allowed there (the file system's limit or the process's"
                 " `ulimit -f`): raise it or set REFRESH_DOCUMENTS_DIR")
        assert found[keys[0]] == ("failed", error, None, None)
        # The other city's document, in the same run, is stored under its checksum.
        sha = hashlib.sha256(SMALL_PDF).hexdigest()
        stored = documents / "sha256" / sha[:2] / f"{sha}.pdf"
        assert found[keys[1]] == ("stored", None, str(stored), sha)
        assert stored.read_bytes() == SMALL_PDF
        # Nothing partial is left of the big one.
        assert [p for p in documents.rglob("*") if p.is_file()] == [stored]

        # Named where operators look: the step's log (one error line) and its metadata.
        assert logged_errors == [error]
        assert (metadata["documents_stored"], metadata["downloads_failed"]) == (1, 1)
        assert error in metadata["download_errors"]
        # Both operators' emails went out, the failed document's included.
        assert sorted(inbox.subjects()) == [NOTICE.format(big), NOTICE.format(small)]

        # The next tick checks both pages as before: a full folder is no source's failure.
        sensor.tick()
    assert checks_of(warehouse, keys) == {key: ["changed", "unchanged"] for key in keys}


@pytest.mark.integration
def test_an_unwritable_documents_folder_fails_each_download_clearly_and_the_run_goes_on(
        warehouse, dbt_manifest, served_site, inbox, tmp_path, monkeypatch):
    cities = ("Selma", "Shafter")  # adjacent in the city list: one partition range
    documents = serve_new_documents(served_site, tmp_path, monkeypatch,
                                    {city: SMALL_PDF for city in cities})
    # A regular file where the folder should be: as root too, nothing can be written below it.
    documents.write_text("not a folder\n")
    keys = [city_key(city) for city in cities]
    from refresh_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        sensor = SourceSensor(instance, tmp_path / "sources.yaml", documents, warehouse)
        assert sorted(r.partition_key for r in sensor.tick().run_requests) == keys
        run = defs.resolve_job_def("source_documents").execute_in_process(
            instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": keys[0],
                  "dagster/asset_partition_range_end": keys[-1]})
        assert run.success
        by_city, logged_errors = step_record(instance, run.run_id)
        assert sorted(by_city) == keys
        metadata = by_city[keys[0]]
        sensor.tick()

    errors = [f"{served_site.url(f'/docs/{key}-acfr-2024.pdf')}: cannot write to {documents}:"
              " Not a directory; a file stands where a folder is needed: move it away or set"
              " REFRESH_DOCUMENTS_DIR" for key in keys]
    assert downloads(warehouse, keys) == {
        key: ("failed", error, None, None) for key, error in zip(keys, errors, strict=True)}
    assert logged_errors == errors
    assert (metadata["documents_stored"], metadata["downloads_failed"]) == (0, 2)
    assert all(error in metadata["download_errors"] for error in errors)
    assert documents.read_text() == "not a folder\n"
    assert sorted(inbox.subjects()) == [NOTICE.format(city) for city in cities]
    # No document was requested: the folder is checked before the download starts.
    assert [path for path in served_site.paths() if path.startswith("/docs/")] == []
    assert checks_of(warehouse, keys) == {key: ["changed", "unchanged"] for key in keys}
