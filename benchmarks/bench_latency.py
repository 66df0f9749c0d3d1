"""Entry -> marts latency through the daemon (issue 13): an operator saves an entry file;
how long until the new figures are readable in marts.city_forecast, city_fiscal_health and
city_risk_scores for that city, and where the time goes. Results go in benchmarks/RESULTS.md.

Usage: python benchmarks/bench_latency.py [--edits 20] [--home DIR]

On a home of its own (an embedded server, the project's entry files copied, no source
checked): the main job fills the warehouse, then `refresh-assets ui` runs the webserver and
the daemon as an operator runs them, and each edit changes one city's FY2020 revenues.
Stages, from the Dagster run records and event log: the entries sensor's pick-up (file
written -> run created), the launch (created -> started), the city's steps up to its
projection (which makes the three marts current: they are views), then the rest of the run
(the change report). The dbt tables follow by automation, outside this path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.common import git_state  # noqa: E402
from tests.ui_fixtures import own_instance, running_ui  # noqa: E402

CLI = str(PROJECT / ".venv" / "bin" / "refresh-assets")
CITIES = ("Vallejo", "Benicia", "Fairfield", "Napa", "Davis")
# Each names the newest entry version behind a city's rows (`entry_version`).
MARTS = ("city_forecast", "city_fiscal_health", "city_risk_scores")
TIMEOUT_SECONDS = 600
# The step whose transaction makes the city's scores and forecast current in the marts.
PROJECTION_STEP = "analytics__projections"


def database_url(env: dict[str, str]) -> str:
    return subprocess.run([CLI, "db", "url"], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def lock_waits(conn) -> list[tuple]:
    """Sessions waiting on a lock, with the sessions blocking them: what a stalled edit
    waits for."""
    with conn.cursor() as cur:
        cur.execute("select waiting.pid, left(waiting.query, 80), blocker.pid, blocker.state,"
                    " left(blocker.query, 80), blocker.application_name"
                    " from pg_stat_activity waiting"
                    " cross join lateral unnest(pg_blocking_pids(waiting.pid)) as b(pid)"
                    " join pg_stat_activity blocker on blocker.pid = b.pid"
                    " where waiting.wait_event_type = 'Lock'")
        return cur.fetchall()


def newest_versions(conn, city_key: str) -> dict[str, int | None]:
    with conn.cursor() as cur:
        found = {}
        for mart in MARTS:
            cur.execute(f"select max(entry_version) from marts.{mart} where city_key = %s",  # noqa: S608
                        (city_key,))
            found[mart] = cur.fetchone()[0]
        return found


def edit(entries: Path, city: str, step: int) -> int:
    """Rewrites the city's FY2020 entry with revenues changed by `step` dollars; returns the
    revenues written."""
    from refresh_assets.lib.entries import EntryFile, known_figures, write_entry_file

    figures = known_figures(entries, city, 2020)
    figures["gf_revenues"] = int(float(figures["gf_revenues"])) + step
    write_entry_file(entries, EntryFile(
        city=city, fiscal_year=2020, source={"title": f"{city} ACFR FY2019-20"},
        entered_by="latency benchmark", entered_at=datetime.now(UTC).isoformat(),
        figures=figures))
    return figures["gf_revenues"]


def run_stages(instance, city_key: str, written_at: float) -> dict[str, float]:
    """The refresh run the edit started: seconds from the write to its creation, start, end."""
    import dagster as dg

    from refresh_assets.lib.run_tags import CITY

    deadline = time.time() + TIMEOUT_SECONDS  # the marts are readable before the run ends
    while True:
        records = instance.get_run_records(dg.RunsFilter(tags={CITY: city_key}), limit=5)
        if all(r.end_time for r in records) or time.time() > deadline:
            break
        time.sleep(0.5)
    for record in records:  # newest first
        created = record.create_timestamp.timestamp()
        if created >= written_at - 1 and record.start_time and record.end_time:
            projected = [event.timestamp for event in instance.all_logs(
                record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
                         if event.step_key == PROJECTION_STEP]
            return {"created": created - written_at, "started": record.start_time - written_at,
                    "ended": record.end_time - written_at,
                    **({"projected": projected[0] - written_at} if projected else {})}
    return {}


def measure(env: dict[str, str], edits: int) -> list[dict]:
    from refresh_assets.lib.cities import city_key
    from refresh_assets.lib.runtime import runtime_environment, server_address
    from refresh_assets.settings import load_settings

    settings = load_settings(env)
    os.environ.update(runtime_environment(settings, server_address(settings)))
    import dagster as dg

    entries = Path(env["REFRESH_ENTRIES_DIR"])
    results = []
    # closing(), not `with connect()`: psycopg2 opens a transaction for a `with` block even in
    # autocommit, and a poller holding its read locks stalls dbt's in-place rebuilds (seen:
    # 519 s, until the poller went away).
    with dg.DagsterInstance.get() as instance, closing(psycopg2.connect(database_url(env))) as conn:
        conn.autocommit = True
        for i in range(edits):
            city = CITIES[i % len(CITIES)]
            key = city_key(city)
            written_at = time.time()
            edit(entries, city, 1000 * (i + 1))
            with conn.cursor() as cur:
                version = None
                reported_waits: list[tuple] = []
                ready: dict[str, float] = {}
                while len(ready) < len(MARTS) and time.time() - written_at < TIMEOUT_SECONDS:
                    if version is None:
                        cur.execute("select max(entry_version) from raw.fiscal_entries"
                                    " where city_key = %s and loaded_at > to_timestamp(%s)",
                                    (key, written_at))
                        version = cur.fetchone()[0]
                    if version is not None:
                        for mart, newest in newest_versions(conn, key).items():
                            if mart not in ready and newest is not None and newest >= version:
                                ready[mart] = time.time() - written_at
                    if time.time() - written_at > 90 and not reported_waits:
                        reported_waits = lock_waits(conn)
                        for wait in reported_waits:
                            print(f"  lock wait: {wait}", flush=True)
                    time.sleep(0.25)
            stages = run_stages(instance, key, written_at)
            row = {"edit": i + 1, "city": city, **{m: ready.get(m) for m in MARTS}, **stages}
            results.append(row)
            shown = ", ".join(f"{m} {ready[m]:.1f} s" if m in ready else f"{m} timed out"
                              for m in MARTS)
            print(f"edit {i + 1}/{edits} ({city}): {shown}", flush=True)
    return results


def report(results: list[dict]) -> None:
    print("\nseconds from the entry file's write until readable (median / worst of "
          f"{len(results)} edits):")
    for mart in MARTS:
        values = [r[mart] for r in results if r[mart] is not None]
        missing = len(results) - len(values)
        if values:
            print(f"  marts.{mart}: {statistics.median(values):.1f} / {max(values):.1f}"
                  + (f" ({missing} timed out)" if missing else ""))
    complete = [r for r in results if all(r[m] is not None for m in MARTS) and "projected" in r]
    if not complete:
        return
    last = [max(r[m] for m in MARTS) for r in complete]
    stages = {
        "sensor pick-up (write -> run created)": [r["created"] for r in complete],
        "launch (created -> started)": [r["started"] - r["created"] for r in complete],
        "city steps (started -> projection committed)": [
            r["projected"] - r["started"] for r in complete],
        "the rest of the run (the change report -> run ended)": [
            r["ended"] - r["projected"] for r in complete],
    }
    total = statistics.median(last)
    print(f"\nall three marts readable: median {total:.1f} s; readable before the run ended in "
          f"{sum(t <= r['ended'] for t, r in zip(last, complete, strict=True))}"
          f" of {len(complete)} edits")
    print(f"stages (median seconds; share of the median {total:.1f} s to all three marts):")
    for name, values in stages.items():
        print(f"  {name}: {statistics.median(values):.1f} ({statistics.median(values) / total:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--home", type=Path, help="An empty folder for the run (default: a "
                                                   "temp one).")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-latency-"))
    with daemon_home(home) as (env, _url):
        report(measure(env, args.edits))


@contextmanager
def daemon_home(home: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The tests' own instance on `home` (embedded server, the project's entry files, no
    source checked), the warehouse filled by the main job, and `refresh-assets ui` (webserver
    and daemon) running and settled; everything stopped at the end. Yields the environment
    and the UI's URL."""
    with own_instance(home) as env:
        for city_folder in (PROJECT / "entries").iterdir():
            if city_folder.is_dir():
                shutil.copytree(city_folder, home / "entries" / city_folder.name)
        print(f"code: {git_state(PROJECT)}; machine: {os.cpu_count()} cores, load "
              f"{os.getloadavg()[0]:.1f}; home: {home}", flush=True)
        started = time.monotonic()
        subprocess.run([CLI, "materialize"], env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"main job (warehouse filled): {time.monotonic() - started:.0f} s", flush=True)
        with running_ui(home / "ui.log", env=env) as url:
            time.sleep(60)  # the sensors' first ticks and any automation the main job left
            yield env, url


if __name__ == "__main__":
    main()
