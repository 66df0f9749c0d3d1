"""Refreshes at the same time, from separate processes, on the real PostgreSQL: different
cities never deadlock or wait on each other; the same city is refreshed by one run at a
time, whichever way the runs were started; the runs' dbt builds take turns; one city's crash
spares the others."""

import multiprocessing
import shutil
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from refresh_assets.lib.entries import EntryFile, known_figures, write_entry_file
from refresh_assets.settings import PROJECT_DIR

pytestmark = pytest.mark.integration

CITIES = ["alameda", "benicia", "berkeley", "fairfield", "napa", "oakland", "vacaville", "vallejo"]
NAMES = {"alameda": "Alameda", "benicia": "Benicia", "berkeley": "Berkeley",
         "fairfield": "Fairfield", "napa": "Napa", "oakland": "Oakland",
         "vacaville": "Vacaville", "vallejo": "Vallejo"}
ROUNDS = 20
SPAWN = multiprocessing.get_context("spawn")  # a fresh process each, as separate launches are


def population(round_number: int) -> int:
    return 100_000 + round_number


def write_entry(entries: Path, city: str, round_number: int) -> None:
    figures = {**known_figures(entries, NAMES[city], 2020), "population": population(round_number)}
    write_entry_file(entries, EntryFile(
        city=NAMES[city], fiscal_year=2020, source={"title": f"{NAMES[city]} ACFR FY2019-20"},
        entered_by="test", entered_at="2026-11-23T10:00:00Z", figures=figures))


def refresh_rounds(city: str, rounds: int, barrier, results) -> None:
    """One process: loads the definitions once, then refreshes its city each round, all
    processes starting the round together."""
    from refresh_assets.definitions import defs

    job = defs.resolve_job_def("refresh_city")
    entries = Path(__import__("os").environ["REFRESH_ENTRIES_DIR"])
    with dg.DagsterInstance.get() as instance:
        for round_number in range(rounds):
            write_entry(entries, city, round_number)
            barrier.wait(timeout=600)
            result = job.execute_in_process(instance=instance, partition_key=city,
                                            raise_on_error=False)
            errors = [e.step_failure_data.error.message for e in result.get_step_failure_events()]
            results.put((city, round_number, result.success, result.run_id, errors))


def run_in_processes(targets: list[tuple]) -> list[multiprocessing.Process]:
    processes = [SPAWN.Process(target=target, args=args) for target, args in targets]
    for process in processes:
        process.start()
    return processes


@pytest.fixture
def city_entries(warehouse, dbt_manifest, tmp_path, monkeypatch):
    entries = tmp_path / "entries"
    shutil.copytree(PROJECT_DIR / "entries" / "vallejo", entries / "vallejo")
    monkeypatch.setenv("REFRESH_ENTRIES_DIR", str(entries))
    monkeypatch.setenv("REFRESH_REPORTS_DIR", str(tmp_path / "reports"))
    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions("cities"))
        instance.add_dynamic_partitions("cities", [c for c in CITIES if c not in known])
    return entries


def latest_population(address, city: str) -> int:
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute("select population from analytics.validated_fiscal_data"
                    " where city_key = %s and fiscal_year = 2020", (city,))
        return cur.fetchone()[0]


def test_eight_cities_refreshed_at_once_twenty_times(city_entries, warehouse):
    barrier, results = SPAWN.Barrier(len(CITIES)), SPAWN.Queue()
    processes = run_in_processes([(refresh_rounds, (c, ROUNDS, barrier, results))
                                  for c in CITIES])
    outcomes = [results.get(timeout=1800) for _ in range(len(CITIES) * ROUNDS)]
    for process in processes:
        process.join(timeout=60)
    failed = [(c, r, errors) for c, r, ok, _, errors in outcomes if not ok]
    assert failed == []  # a deadlock or serialization error would fail its run
    # Every result is right: each city ends on its last round's figures, refreshed by it.
    runs = {(c, r): run_id for c, r, _, run_id, _ in outcomes}
    with psycopg2.connect(warehouse.libpq_url()) as conn, conn.cursor() as cur:
        for city in CITIES:
            assert latest_population(warehouse, city) == population(ROUNDS - 1)
            cur.execute("select status, count(*) from ops.refresh_operations"
                        " where run_id = any(%s) group by 1",
                        ([runs[(city, r)] for r in range(ROUNDS)],))
            assert cur.fetchall() == [("success", ROUNDS)], city
            # Every round's version stored exactly once (earlier tests may have stored others).
            cur.execute("select count(*), count(distinct population) from raw.fiscal_entries"
                        " where city_key = %s and source_kind = 'entry_file' and fiscal_year = 2020"
                        " and population = any(%s)",
                        (city, [population(r) for r in range(ROUNDS)]))
            assert cur.fetchone() == (ROUNDS, ROUNDS), city
    # Different cities do not wait on each other: in most rounds their runs overlapped.
    with dg.DagsterInstance.get() as instance:
        overlapping = 0
        for round_number in range(ROUNDS):
            spans = [step_window(instance, runs[(c, round_number)]) for c in CITIES]
            overlapping += max(start for start, _ in spans) < min(end for _, end in spans)
    assert overlapping >= ROUNDS // 2, f"only {overlapping} of {ROUNDS} rounds ran side by side"


def refresh_once(job_name: str, tags: dict, results) -> None:
    from refresh_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, tags=tags, raise_on_error=False)
        results.put((tags.get("dagster/partition", "all"), result.success, result.run_id))


def build_dbt_models(results) -> None:
    """The dbt build automation launches after refreshes: the models under automation."""
    from refresh_assets.definitions import defs
    from refresh_assets.defs.dbt import AUTOMATED_MODELS, warehouse_dbt_models

    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([warehouse_dbt_models], instance=instance, selection=AUTOMATED_MODELS,
                                resources=defs.resources, raise_on_error=False)
        results.put(("dbt", result.success, result.run_id))


def step_window(instance, run_id: str, step_key: str | None = None) -> tuple[float, float]:
    """When the run's steps (or the one step) started and last succeeded."""
    records = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}).records
    stamps = [r.event_log_entry.timestamp for r in records
              if step_key is None or r.event_log_entry.step_key == step_key]
    return min(stamps), max(stamps)


def test_one_refresh_per_city_at_a_time_and_a_full_refresh_beside_a_city(city_entries):
    """Two refreshes of Vallejo, one of Napa and one of every city, started at the same
    moment, beside two dbt builds: all succeed, two runs that share a city never overlap (the
    later one waits), and the dbt builds of the same marts take turns (the pool
    `warehouse_dbt`)."""
    with dg.DagsterInstance.get() as instance:
        every_city = instance.get_dynamic_partitions("cities")
    whole_range = {"dagster/asset_partition_range_start": every_city[0],
                   "dagster/asset_partition_range_end": every_city[-1]}
    results = SPAWN.Queue()
    processes = run_in_processes([
        (refresh_once, ("refresh_city", {"dagster/partition": "vallejo"}, results)),
        (refresh_once, ("refresh_city", {"dagster/partition": "vallejo"}, results)),
        (refresh_once, ("refresh_city", whole_range, results)),
        (refresh_once, ("refresh_city", {"dagster/partition": "napa"}, results)),
        (build_dbt_models, (results,)),
        (build_dbt_models, (results,)),
    ])
    outcomes = [results.get(timeout=900) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert all(ok for _, ok, _ in outcomes), outcomes
    with dg.DagsterInstance.get() as instance:
        windows = {run_id: step_window(instance, run_id) for _, _, run_id in outcomes}
    vallejo_runs = [run_id for city, _, run_id in outcomes if city in ("vallejo", "all")]
    napa_runs = [run_id for city, _, run_id in outcomes if city in ("napa", "all")]
    for runs in (vallejo_runs, napa_runs):
        spans = sorted(windows[r] for r in runs)
        for earlier, later in zip(spans, spans[1:], strict=False):
            assert earlier[1] <= later[0], f"two refreshes of one city overlapped: {spans}"
    with dg.DagsterInstance.get() as instance:
        builds = sorted(step_window(instance, run_id, "warehouse_dbt_models")
                        for what, _, run_id in outcomes if what == "dbt")
    for earlier, later in zip(builds, builds[1:], strict=False):
        assert earlier[1] <= later[0], f"two dbt builds overlapped: {builds}"
