"""Soak through the daemon (issue 13): entry edits across many cities for a quarter of an hour,
as operators save them, with the webserver and the daemon of `refresh-assets ui` running as in
bench_latency.py. Not part of CI: it takes the machine for 20-30 minutes. Results go in
benchmarks/RESULTS.md.

Usage: python benchmarks/bench_soak.py [--edits 200] [--cities 50] [--minutes 15]
                                       [--drain-minutes 15] [--home DIR]

On a home of its own (an embedded server, the project's entry files copied, no source
checked), the main job fills the warehouse, then `refresh-assets ui` starts; the edits are
spread evenly over --minutes, city after city, each raising one city's FY2020 revenues (the
projections' base year) by a different amount. It reports:
- every edit reflected: once the queue has drained, each city's last edit is what
  marts.city_fiscal_years shows, and its entry version the newest behind marts.city_forecast,
  city_fiscal_health and city_risk_scores; an earlier edit was stored as a version of its
  own, or overwritten by the city's next edit before any run read the file (coalesced);
- the drain time (last edit -> no run queued or under way, every last edit in the marts) and
  any run still queued or under way --drain-minutes after the last edit (stuck);
- memory: resident memory of the webserver and of the daemon, each alone and with its child
  processes, and of the whole `dagster dev` tree (the code server and the runs it launches),
  sampled every 10 s: at the first edit, peak, at the end, and the least-squares slope;
- throughput (edits reflected per minute), edit -> marts latency (p50, p95: from the file's
  write until its version, or a later one, is the newest in all three marts; marts polled
  every 5 s), and the runs by job and status.
Exit status 1 when an edit is lost, a run is stuck or a run failed. Every run loads the code
from this checkout: soak a checkout nobody edits meanwhile, on a quiet machine (it says when
the checkout changed during the soak).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psutil
import psycopg2

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.bench_latency import MARTS, daemon_home, database_url, edit  # noqa: E402
from tests.reliability_fixtures import UNFINISHED, unfinished_runs  # noqa: E402

YEAR = 2020  # the year bench_latency.edit changes
SAMPLE_SECONDS = 10  # memory
POLL_SECONDS = 5  # the marts
MB = 1024 * 1024


# -- memory -----------------------------------------------------------------------------------

def dagster_dev_process(port: int) -> psutil.Process:
    """The `dagster dev` that `refresh-assets ui --port PORT` became (it execs it)."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "dev" in cmdline and str(port) in cmdline:
            return process
    raise SystemExit(f"no `dagster dev` process on port {port}")


def child_with(parent: psutil.Process, marker: str) -> psutil.Process:
    """The child of `parent` whose command line holds `marker` (`dagster dev` starts the
    webserver as `-m dagster_webserver`, the daemon as `-m dagster._daemon`)."""
    for child in parent.children():
        if marker in child.cmdline():
            return child
    raise SystemExit(f"no {marker} process under `dagster dev` ({parent.pid})")


def rss(process: psutil.Process, with_children: bool) -> int:
    """Resident bytes of the process (and of its descendants alive at this moment)."""
    processes = [process, *(process.children(recursive=True) if with_children else [])]
    total = 0
    for member in processes:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:  # a run that just ended
            continue
    return total


@dataclass
class Memory:
    """RSS samples (seconds since the first edit, bytes) per measured part."""

    webserver: psutil.Process
    daemon: psutil.Process
    tree: psutil.Process  # `dagster dev`: both of them, the code server, the runs
    samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    def sample(self, at: float) -> None:
        for name, value in (
                ("webserver", rss(self.webserver, False)),
                ("webserver + children", rss(self.webserver, True)),
                ("daemon", rss(self.daemon, False)),
                ("daemon + children", rss(self.daemon, True)),
                ("dagster dev tree (code server, runs)", rss(self.tree, True))):
            self.samples.setdefault(name, []).append((at, value))

    def report(self) -> None:
        print("\nresident memory, MB (at the first edit / peak / at the end; slope over the soak):")
        for name, points in self.samples.items():
            values = [v / MB for _, v in points]
            slope = (statistics.linear_regression([t / 3600 for t, _ in points], values).slope
                     if len(points) > 2 else float("nan"))
            print(f"  {name}: {values[0]:.0f} / {max(values):.0f} / {values[-1]:.0f}; "
                  f"{slope:+.1f} MB/h over {len(points)} samples")


# -- the cities, the edits, the marts ---------------------------------------------------------

def soak_cities(count: int) -> list[str]:
    """`count` cities spread over the list, each with every figure an operator entry needs
    for the year edited (so the edit validates)."""
    from refresh_assets.lib.entries import published_figures
    from refresh_assets.lib.validation import REQUIRED_FOR_ENTRIES

    published = published_figures()
    year = published[published["fiscal_year"] == YEAR].dropna(subset=list(REQUIRED_FOR_ENTRIES))
    cities = sorted(year["city"].unique())
    if count > len(cities):
        raise SystemExit(f"--cities {count}: only {len(cities)} cities have complete {YEAR} figures")
    return [cities[i * len(cities) // count] for i in range(count)]


@dataclass
class Edit:
    city: str
    key: str
    written_at: float  # Unix time
    revenues: int
    version: int | None = None  # the entry version that stored it, if one did


def newest_in_marts(conn, keys: list[str]) -> dict[str, int]:
    """Per city: the newest entry version all three marts show (the least of their newest)."""
    newest: dict[str, int] = {}
    with conn.cursor() as cur:
        for number, mart in enumerate(MARTS):
            cur.execute(f"select city_key, max(entry_version) from marts.{mart}"  # noqa: S608
                        " where city_key = any(%s) group by 1", (keys,))
            found = dict(cur.fetchall())
            for key in keys:
                version = found.get(key) or 0
                newest[key] = version if number == 0 else min(newest[key], version)
    return newest


def stored_versions(conn, keys: list[str], since: float) -> list[tuple[str, int, int]]:
    """(city key, entry version, revenues) of the entry files stored since `since`."""
    with conn.cursor() as cur:
        cur.execute("select city_key, entry_version, gf_revenues::bigint from raw.fiscal_entries"
                    " where city_key = any(%s) and fiscal_year = %s and source_kind = 'entry_file'"
                    " and loaded_at >= to_timestamp(%s) order by entry_version",
                    (keys, YEAR, since))
        return cur.fetchall()


def last_edits_in_marts(conn, last: dict[str, Edit]) -> list[str]:
    """The cities whose last edit is not (yet) what the marts show."""
    keys = sorted(last)
    newest = newest_in_marts(conn, keys)
    with conn.cursor() as cur:
        cur.execute("select city_key, gf_revenues::bigint, entry_version from marts.city_fiscal_years"
                    " where city_key = any(%s) and fiscal_year = %s", (keys, YEAR))
        shown = {key: (revenues, version) for key, revenues, version in cur.fetchall()}
    return [key for key in keys
            if shown.get(key, (None, None))[0] != last[key].revenues
            or newest[key] < shown[key][1]]


def code_fingerprint() -> str:
    """The commit and the uncommitted changes of the checkout: every run loads the code
    from it, so a change made during the soak (another engineer's) is in part of the runs."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True,
                              check=False).stdout
    return git("rev-parse", "HEAD").strip() + ":" + hashlib.sha256(
        git("diff", "HEAD").encode()).hexdigest()[:12]


def still_unfinished(instance) -> list[str]:
    """Runs queued or under way, each with its age and its last event: slow or stuck."""
    described = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=UNFINISHED)):
        run = record.dagster_run
        [last] = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records or [None]
        event = last.event_log_entry if last else None
        said = (event.dagster_event.event_type_value if event and event.dagster_event else "") + (
            f" {event.message}" if event and event.message else "")
        described.append(f"{run.job_name} {run.run_id} {run.status.value}, created "
                         f"{time.time() - record.create_timestamp.timestamp():.0f} s ago; last "
                         f"event {time.time() - event.timestamp:.0f} s ago: {said[:120]}"
                         if event else f"{run.job_name} {run.run_id} {run.status.value}")
    return described


# -- the soak ---------------------------------------------------------------------------------

def soak(env: dict[str, str], port: int, args: argparse.Namespace) -> bool:
    from refresh_assets.lib.cities import city_key
    from refresh_assets.lib.run_tags import CITY
    from refresh_assets.lib.runtime import runtime_environment, server_address
    from refresh_assets.settings import load_settings

    settings = load_settings(env)
    os.environ.update(runtime_environment(settings, server_address(settings)))
    code = code_fingerprint()

    entries = Path(env["REFRESH_ENTRIES_DIR"])
    cities = soak_cities(args.cities)
    keys = [city_key(city) for city in cities]
    tree = dagster_dev_process(port)
    memory = Memory(child_with(tree, "dagster_webserver"), child_with(tree, "dagster._daemon"), tree)
    spacing = args.minutes * 60 / args.edits
    edits: list[Edit] = []
    reached: dict[str, list[tuple[float, int]]] = {key: [] for key in keys}  # marts, over time
    # closing(), not `with connect()`: a poller inside a transaction stalls dbt's rebuilds
    # (bench_latency.py).
    with dg.DagsterInstance.get() as instance, \
            closing(psycopg2.connect(database_url(env))) as conn:
        conn.autocommit = True
        started = time.time()
        next_sample = next_poll = next_report = started
        drain_deadline = drained_at = None
        print(f"{args.edits} edits of {len(cities)} cities over {args.minutes:g} min (one every "
              f"{spacing:.1f} s), cities {cities[0]} ... {cities[-1]}", flush=True)
        while True:
            now = time.time()
            if len(edits) < args.edits and now >= started + len(edits) * spacing:
                city = cities[len(edits) % len(cities)]
                written_at = time.time()
                revenues = edit(entries, city, 1000 * (len(edits) + 1))
                edits.append(Edit(city, city_key(city), written_at, revenues))
                if len(edits) == args.edits:
                    drain_deadline = time.time() + args.drain_minutes * 60
                continue
            if now >= next_sample:
                memory.sample(now - started)
                next_sample += SAMPLE_SECONDS
            if now >= next_poll:
                for key, version in newest_in_marts(conn, keys).items():
                    if not reached[key] or reached[key][-1][1] != version:
                        reached[key].append((now, version))
                next_poll += POLL_SECONDS
                if drain_deadline is not None:
                    last = {e.key: e for e in edits}
                    waiting = unfinished_runs(instance)
                    if not waiting and not last_edits_in_marts(conn, last):
                        drained_at = now
                        break
                    if now > drain_deadline:
                        break
            if now >= next_report:
                print(f"  {(now - started) / 60:4.1f} min: {len(edits)} edits written, "
                      f"{len(unfinished_runs(instance))} run(s) queued or under way, daemon "
                      f"{rss(memory.daemon, False) / MB:.0f} MB, webserver "
                      f"{rss(memory.webserver, False) / MB:.0f} MB", flush=True)
                next_report += 60
            time.sleep(max(0.0, min(next_sample, next_poll,
                                    started + len(edits) * spacing if len(edits) < args.edits
                                    else next_poll) - time.time()))
        memory.sample(time.time() - started)
        last_edit_at = edits[-1].written_at
        stuck = still_unfinished(instance)
        runs = [r for r in instance.get_run_records(dg.RunsFilter())
                if r.create_timestamp.timestamp() >= started]
        versions = stored_versions(conn, keys, started)
        last = {e.key: e for e in edits}
        not_reflected = last_edits_in_marts(conn, last)

    # Which edit each stored version is (revenues are unique per city), and when its version
    # or a later one was first the newest in all three marts.
    by_content = {(key, revenues): version for key, version, revenues in versions}
    for e in edits:
        e.version = by_content.get((e.key, e.revenues))
    latencies, coalesced, lost = [], 0, []
    for key in keys:
        city_edits = [e for e in edits if e.key == key]
        for number, e in enumerate(city_edits):
            shown_by = e.version or next((later.version for later in city_edits[number + 1:]
                                          if later.version), None)
            if e.version is None:
                if number == len(city_edits) - 1:
                    lost.append(f"{e.city} ({e.revenues})")
                    continue
                coalesced += 1
            at = next((t for t, version in reached[key] if shown_by and version >= shown_by), None)
            if at is not None:
                latencies.append(at - e.written_at)

    print(f"\nedits: {len(edits)} written over {(last_edit_at - started) / 60:.1f} min; "
          f"{len(edits) - coalesced - len(lost)} stored as versions, {coalesced} coalesced "
          f"(overwritten by the city's next edit before a run read the file), {len(lost)} lost"
          + (f": {', '.join(lost)}" if lost else ""))
    print(f"cities whose last edit the marts do not show: {len(not_reflected)}"
          + (f" ({', '.join(not_reflected)})" if not_reflected else ""))
    if drained_at is not None:
        print(f"drain: {drained_at - last_edit_at:.0f} s from the last edit to no run queued or "
              f"under way with every last edit in the marts (±{POLL_SECONDS} s)")
    else:
        print(f"drain: not within {args.drain_minutes:g} min of the last edit")
    print(f"runs still queued or under way at the end (stuck, or slow: see each one's last "
          f"event): {len(stuck)}" + "".join(f"\n  {run}" for run in stuck))
    reflected = len(latencies)  # edits whose version, or a later one, all three marts showed
    window = ((drained_at or time.time()) - started) / 60
    print(f"throughput: {reflected / window:.1f} edits reflected per minute over {window:.1f} min "
          f"(offered: {len(edits) / max((last_edit_at - started) / 60, 1e-9):.1f} per minute)")
    if latencies:
        latencies.sort()
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        print(f"edit -> all three marts: p50 {statistics.median(latencies):.0f} s, p95 {p95:.0f} s,"
              f" worst {latencies[-1]:.0f} s ({len(latencies)} edits; marts polled every "
              f"{POLL_SECONDS} s)")
    counts = Counter((r.dagster_run.job_name, r.dagster_run.status.value) for r in runs)
    print("runs: " + ", ".join(f"{job} {status} {n}" for (job, status), n in sorted(counts.items())))
    refreshes = Counter(r.dagster_run.tags.get(CITY) for r in runs
                        if r.dagster_run.job_name == "refresh_city")
    if refreshes:
        print(f"refresh_city runs per city: min {min(refreshes.values())}, max "
              f"{max(refreshes.values())}, for {len(edits) / len(keys):.1f} edits per city")
    memory.report()
    if code_fingerprint() != code:
        print("\nthe checkout changed during the soak (commit or uncommitted changes): runs "
              "launched after the change ran other code; run the soak on a quiet checkout")
    failed = sum(n for (_, status), n in counts.items() if status == "FAILURE")
    return not lost and not not_reflected and not stuck and not failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--cities", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=15, help="Over which the edits are spread.")
    parser.add_argument("--drain-minutes", type=float, default=15,
                        help="How long after the last edit the queue may take to drain.")
    parser.add_argument("--home", type=Path, help="An empty folder for the run (default: a "
                                                   "temp one).")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-soak-"))
    home.mkdir(parents=True, exist_ok=True)
    with daemon_home(home) as (env, url):
        ok = soak(env, int(url.rsplit(":", 1)[1]), args)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
