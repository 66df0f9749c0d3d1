"""What limits the deployment as cities grow (issue 13, docs/scaling.md): the figures
benchmarks/RESULTS.md did not have yet, at 477 cities (the real data), 4,770 and 48,000.

Cheap by design: no full refresh beyond the 477 real cities. The extra cities are dynamic
partitions added to a real instance (PostgreSQL, dagster.yaml), which is what a state of
4,770 or 48,000 cities costs Dagster before any data; `reports/change_report` and then
`exports/city_exports` get a materialization for each of them (written in batches of 500
through Dagster's event-log storage, as the main job's last two steps leave them), so the
partition status and the automation sensor have something to read. The warehouse holds the
477 real cities' data, then (last part) the 4,770 synthetic ones of make_synthetic_cities.py.

On a home of its own (an embedded PostgreSQL on a free port, the tests' `own_instance`: no
entry files, no source checked; stopped at the end), for each size in --sizes:

  1. in a fresh process (`--inner`, the CLI's runtime environment): loading the definitions;
     at the first size, the 477 real cities registered and the main job `refresh_all` run in
     process, then two one-city refreshes (`refresh_city`, Vallejo); at the other sizes the
     partitions added up to the size and one one-city refresh. For every run: its steps
     (bench_refresh.measure_run), the rows and bytes it wrote to the event log (by event
     type, with `asset_event_tags`), the growth of each table of the `dagster` database, and
     the sessions each database accepted (`pg_stat_database.sessions`). Then the calls that
     grow with the partitions: fetching every city key (what the entries sensor does each
     tick), the city keys of a run over the whole range (the failure sensor, the city locks),
     `get_materialized_partitions`, and the entries sensor evaluated in process; and the city
     locks a run over every city takes (CityRunLocks), which PostgreSQL keeps in its shared
     lock table.
  2. `refresh-assets ui` (webserver + daemon, as operators run it): time until the code
     location is loaded; --idle seconds of daemon ticks; the UI's partition status over
     GraphQL (`partitionStats` of every city-partitioned asset, as the asset list shows it,
     and one asset's `assetPartitionStatuses` with its keys, as its Partitions tab loads it);
     a city refresh through the daemon (`refresh-assets refresh --city Vallejo`) and --settle
     seconds more (an automation tick after it); the memory (RSS) of the webserver, daemon
     and code server; then each sensor's tick durations and intervals from the instance's
     tick records.

All along, a thread of this process samples `pg_stat_activity` every 50 ms: the peak number
of client connections per database (and per application_name) in each phase.

Last (--skip-data leaves it out): the warehouse is filled to 4,770 cities by the library
functions the assets call (bench_forecast_layer.load_warehouse), and the one-city refresh is
run twice more, with the 4,770-city bulk file, then the dbt build automation launches after
refreshes (the models under automation, over every city), twice.

The code measured is that of the checkout this file is in (it goes first on the import path,
here and in every subprocess): to measure one commit while others edit the working tree, run
a copy of this file in a `git archive` of that commit, with this venv's Python. Usage:
    python benchmarks/bench_scaling.py [--sizes 477,4770,48000] [--idle 45] [--settle 35]
                                       [--json OUT.json]
    python benchmarks/bench_scaling.py --from-json OUT.json   # print saved figures again
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the code measured is the checkout this file is in
from benchmarks.common import git_state  # noqa: E402

WORK = REPO / "benchmarks" / ".work"
VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "refresh-assets")
CITY_NAME, CITY = "Vallejo", "vallejo"
SAMPLER = "bench_scaling sampler"  # its own connection, left out of the counts
SAMPLE_SECONDS = 0.05
# What a full refresh leaves per added city, as the main job does: the change report, then
# the export. Only these two, and in this order: the export's automation then has nothing to
# do for these cities (it exports a city whose report is newer than its export), and no dbt
# model depends on them (a runless materialization of its inputs would start dbt builds).
MATERIALIZED_ASSETS = (("reports", "change_report"), ("exports", "city_exports"))
MATERIALIZED_ASSET = MATERIALIZED_ASSETS[0]  # whose partitions the UI's status lists
BATCH = 500  # as DAGSTER_EVENT_BATCH_SIZE
progress = sys.stdout


def say(message: str) -> None:
    print(message, file=progress, flush=True)


def timed(call, repeats: int) -> dict:
    """Seconds of `repeats` calls: median, min, max, and the last result's size if it has one."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    out = {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
           "n": repeats, "each": seconds}
    if hasattr(result, "__len__"):
        out["items"] = len(result)
    return out


def synthetic_keys(count: int) -> list[str]:
    """The first `count` city keys of make_synthetic_cities.py: the real cities, then
    "<city> 2" for each in the published order, then "<city> 3", and so on."""
    from refresh_assets.lib.cities import city_key, known_cities

    names = list(known_cities().values())
    keys, copy = [city_key(n) for n in names], 2
    while len(keys) < count:
        keys.extend(city_key(f"{n} {copy}") for n in names)
        copy += 1
    return keys[:count]


# --------------------------------------------------------------------------------------
# Inner part: a fresh process with the runtime environment exported.
# --------------------------------------------------------------------------------------

def dagster_sizes(conn) -> dict[str, int]:
    """Bytes of each table of the dagster database, with its indexes and TOAST."""
    with conn.cursor() as cur:
        cur.execute("select relname, pg_total_relation_size(oid) from pg_class"
                    " where relnamespace = 'public'::regnamespace and relkind = 'r'")
        return dict(cur.fetchall())


def sessions(conn) -> dict[str, int]:
    """Sessions each database has accepted since the server started."""
    time.sleep(1.5)  # a backend reports its session when it ends; let the last ones end
    with conn.cursor() as cur:
        cur.execute("select datname, sessions from pg_stat_database where datname is not null")
        return dict(cur.fetchall())


def event_volume(conn, run_id: str) -> dict:
    """Rows and bytes a run wrote to the event log, by event type, and its asset event tags."""
    with conn.cursor() as cur:
        cur.execute("select coalesce(dagster_event_type, 'LOG_MESSAGE'), count(*),"
                    " sum(pg_column_size(event)) from event_logs where run_id = %s group by 1",
                    (run_id,))
        by_type = {kind: {"rows": rows, "bytes": int(size)} for kind, rows, size in cur.fetchall()}
        cur.execute("select count(*), coalesce(sum(pg_column_size(t.*)), 0) from asset_event_tags t"
                    " join event_logs e on e.id = t.event_id where e.run_id = %s", (run_id,))
        tag_rows, tag_bytes = cur.fetchone()
    return {"by_type": by_type, "rows": sum(v["rows"] for v in by_type.values()),
            "bytes": sum(v["bytes"] for v in by_type.values()),
            "tag_rows": tag_rows, "tag_bytes": int(tag_bytes)}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def measured_run(instance, conn, out: dict, name: str, job, label: str, **kwargs) -> dict:
    """One run in process, with the window the sampler reads, the event-log volume, the
    growth of the dagster database's tables and the sessions opened, by database."""
    from benchmarks.bench_refresh import measure_run
    from refresh_assets.settings import load_settings

    storage = load_settings().dagster_storage_dir
    tables, opened, stored = dagster_sizes(conn), sessions(conn), folder_bytes(storage)
    started, load = time.time(), os.getloadavg()[0]
    run = measure_run(instance, job, label, **kwargs)
    out["windows"][name] = [started, time.time()]
    run["load"] = [round(load, 2), round(os.getloadavg()[0], 2)]  # 1-minute, before and after
    after, opened_after = dagster_sizes(conn), sessions(conn)
    run["event_log"] = event_volume(conn, run["run_id"])
    run["table_growth"] = {t: after[t] - tables.get(t, 0) for t in after
                           if after[t] != tables.get(t, 0)}
    run["sessions"] = {db: opened_after[db] - opened.get(db, 0) for db in opened_after
                       if opened_after[db] != opened.get(db, 0)}
    run["compute_log_bytes"] = folder_bytes(storage) - stored
    return run


def store_materializations(instance, asset_key, keys: list[str]) -> None:
    """One materialization of `asset_key` per key, in batches, as a refresh leaves them."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    for first in range(0, len(keys), BATCH):
        now = time.time()
        instance.event_log_storage.store_event_batch([
            EventLogEntry(
                user_message="", level=logging.INFO, job_name=RUNLESS_JOB_NAME,
                run_id=RUNLESS_RUN_ID, error_info=None, timestamp=now, step_key=None,
                dagster_event=DagsterEvent(
                    event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                    job_name=RUNLESS_JOB_NAME,
                    event_specific_data=StepMaterializationData(dg.AssetMaterialization(
                        asset_key, partition=key, metadata={"city_outcome": "refreshed"}))))
            for key in keys[first:first + BATCH]])


def partition_probes(instance, defs) -> dict:
    """The calls whose cost grows with the number of city partitions."""
    import dagster as dg

    from refresh_assets.defs.partitions import run_city_keys
    from refresh_assets.defs.sensors import entry_files_sensor
    from refresh_assets.lib.cities import CITY_PARTITIONS

    keys = instance.get_dynamic_partitions(CITY_PARTITIONS)
    whole_range = dg.DagsterRun(job_name="refresh_all", run_id="bench-scaling-range", tags={
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1]})
    resources = {name: defs.resources[name] for name in ("source_files", "warehouse")}
    cursor = entry_files_sensor(dg.build_sensor_context(instance=instance,
                                                        resources=resources)).cursor

    def sensor_tick():
        return entry_files_sensor(dg.build_sensor_context(instance=instance, resources=resources,
                                                          cursor=cursor)).run_requests

    materialized = dg.AssetKey(list(MATERIALIZED_ASSET))
    return {
        "get_dynamic_partitions": timed(lambda: instance.get_dynamic_partitions(CITY_PARTITIONS), 5),
        "run_city_keys_whole_range": timed(lambda: run_city_keys(whole_range, instance), 3),
        "get_materialized_partitions": timed(
            lambda: instance.get_materialized_partitions(materialized), 3),
        "entry_sensor_tick_in_process": timed(sensor_tick, 5),
    }


def run_locks_probe(address, keys: list[str]) -> dict:
    """The city locks of a run over `keys` (CityRunLocks: one session-level advisory lock per
    city, held by one connection for the whole run), taken and let go. PostgreSQL keeps them in
    its shared lock table, sized max_locks_per_transaction x (max_connections +
    max_prepared_transactions). If they do not fit: how many locks one session can hold."""
    from refresh_assets.lib.city_locks import CityRunLocks

    run_id = "bench-scaling-locks"
    started = time.perf_counter()
    try:
        with CityRunLocks(address, run_id, keys):
            out = {"ok": True, "seconds": time.perf_counter() - started}
    except Exception as exc:  # what the run would meet: reported, not raised
        out = {"ok": False, "seconds": time.perf_counter() - started,
               "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"}
    with closing(connect_when_possible(address, out)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("delete from ops.refresh_runs where run_id = %s", (run_id,))
            cur.execute("select current_setting('max_locks_per_transaction')::int,"
                        " current_setting('max_connections')::int,"
                        " current_setting('max_prepared_transactions')::int")
            (out["max_locks_per_transaction"], out["max_connections"],
             out["max_prepared_transactions"]) = cur.fetchone()
    if not out["ok"]:
        out["locks_one_session_got"] = lock_table_room(address, out)
    return {"cities": len(keys), **out}


def connect_when_possible(address, out: dict):
    """A connection, once the server takes one again: a new session needs room in the lock
    table too, and a failed run's session frees its locks only as it ends."""
    from refresh_assets.lib.database import DatabaseUnavailable, connect

    started = time.perf_counter()
    while True:
        try:
            conn = connect(address, application_name="bench_scaling")
            out["server_refused_connections_for"] = time.perf_counter() - started
            return conn
        except DatabaseUnavailable:
            if time.perf_counter() - started > 60:
                raise
            time.sleep(0.2)


def lock_table_room(address, out: dict) -> int:
    """Session-level advisory locks one session takes before PostgreSQL refuses the next."""
    import psycopg2

    held = 0
    with closing(connect_when_possible(address, {})) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            try:
                while True:
                    cur.execute("select pg_advisory_lock(7240199, %s)", (held,))
                    held += 1
            except psycopg2.OperationalError as exc:
                out["room_error"] = str(exc).strip().splitlines()[0]
    return held


def city_partitioned_assets(defs) -> list[list[str]]:
    from refresh_assets.defs.partitions import city_partitions

    graph = defs.resolve_asset_graph()
    return sorted(key.path for key in graph.get_all_asset_keys()
                  if graph.get(key).partitions_def == city_partitions)


def inner_size(options: dict, out: dict) -> None:
    started = time.perf_counter()
    import dagster as dg

    from refresh_assets.definitions import defs
    from refresh_assets.lib.cities import CITY_PARTITIONS, city_keys_with_data
    from refresh_assets.lib.database import connect
    from refresh_assets.lib.run_tags import CITY as CITY_TAG
    from refresh_assets.lib.run_tags import TRIGGER
    from refresh_assets.lib.runtime import server_address
    from refresh_assets.settings import load_settings

    main_job, city_job = defs.resolve_job_def("refresh_all"), defs.resolve_job_def("refresh_city")
    out["load_definitions"] = time.perf_counter() - started
    say(f"  definitions loaded in {out['load_definitions']:.1f} s")
    out["partitioned_assets"] = city_partitioned_assets(defs)
    settings = load_settings()
    size = options["size"]
    city_tags = {CITY_TAG: CITY, TRIGGER: "manual"}
    with dg.DagsterInstance.get() as instance, closing(connect(
            server_address(settings), server_address(settings).dagster_db,
            application_name="bench_scaling")) as conn:
        conn.autocommit = True
        known = instance.get_dynamic_partitions(CITY_PARTITIONS)
        out["runs"] = {}
        if not known:  # the first size: the real cities, and the main job over them
            real = city_keys_with_data(settings.entries_dir)
            instance.add_dynamic_partitions(CITY_PARTITIONS, real)
            tags = {"dagster/asset_partition_range_start": real[0],
                    "dagster/asset_partition_range_end": real[-1], TRIGGER: "manual"}
            out["runs"]["main_job"] = measured_run(
                instance, conn, out, "main_job", main_job,
                f"refresh_all, {len(real)} cities, empty warehouse", tags=tags)
            out["reports_bytes"] = folder_bytes(settings.reports_dir)
            out["reports_files"] = sum(1 for p in settings.reports_dir.rglob("*") if p.is_file())
            repeats = 2
        else:
            new = [k for k in synthetic_keys(size) if k not in set(known)]
            mark = time.perf_counter()
            instance.add_dynamic_partitions(CITY_PARTITIONS, new)
            out["add_partitions"] = {"keys": len(new), "seconds": time.perf_counter() - mark}
            mark = time.perf_counter()
            for asset in MATERIALIZED_ASSETS:
                store_materializations(instance, dg.AssetKey(list(asset)), new)
            out["store_materializations"] = {"events": len(new) * len(MATERIALIZED_ASSETS),
                                             "seconds": time.perf_counter() - mark}
            say(f"  {len(new):,} partitions added in {out['add_partitions']['seconds']:.1f} s, "
                f"their materializations stored in {out['store_materializations']['seconds']:.1f} s")
            repeats = 1
        out["partitions"] = len(instance.get_dynamic_partitions(CITY_PARTITIONS))
        out["runs"]["city"] = [
            measured_run(instance, conn, out, f"city_{i}", city_job,
                         f"refresh_city {CITY}, {out['partitions']:,} partitions",
                         partition_key=CITY, tags=city_tags)
            for i in range(repeats)]
        out["probes"] = partition_probes(instance, defs)
        out["run_locks"] = run_locks_probe(server_address(settings),
                                           instance.get_dynamic_partitions(CITY_PARTITIONS))
        say(f"  city locks of a whole-range run: {out['run_locks']}")
        with conn.cursor() as cur:
            cur.execute("select pg_database_size(current_database())")
            out["dagster_db_bytes"] = cur.fetchone()[0]
            cur.execute("select count(*), coalesce(sum(pg_column_size(partition)), 0)"
                        " from dynamic_partitions")
            out["dynamic_partitions_rows"], out["dynamic_partitions_bytes"] = cur.fetchone()


def inner_data(options: dict, out: dict) -> None:
    """The warehouse filled to the synthetic cities; the one-city refresh with them."""
    import dagster as dg

    from benchmarks.bench_forecast_layer import load_warehouse
    from refresh_assets.definitions import defs
    from refresh_assets.defs.dbt import AUTOMATED_MODELS
    from refresh_assets.defs.resources import SourceFilesResource
    from refresh_assets.lib.database import connect
    from refresh_assets.lib.run_tags import CITY as CITY_TAG
    from refresh_assets.lib.run_tags import TRIGGER
    from refresh_assets.lib.runtime import server_address
    from refresh_assets.settings import load_settings

    settings = load_settings()
    address = server_address(settings)
    csv, entries = Path(options["synthetic_csv"]), Path(options["empty_entries_dir"])
    entries.mkdir(parents=True, exist_ok=True)
    mark = time.perf_counter()
    filled = load_warehouse(address, csv, entries)
    out["fill"] = {"seconds": time.perf_counter() - mark, "cities": filled["cities"],
                   "versions_added": filled["versions_added"]}
    say(f"  warehouse filled to {filled['cities']:,} cities in {out['fill']['seconds']:.0f} s")
    synthetic = SourceFilesResource(entries_dir=str(entries), bulk_import_csv=str(csv))
    out["windows"], out["runs"] = {}, {}
    with dg.DagsterInstance.get() as instance, closing(connect(
            address, address.dagster_db, application_name="bench_scaling")) as conn:
        conn.autocommit = True
        out["runs"]["city"] = [
            measured_run(instance, conn, out, f"city_data_{i}", defs.resolve_job_def("refresh_city"),
                         f"refresh_city {CITY}, {filled['cities']:,} cities in the warehouse",
                         partition_key=CITY, tags={CITY_TAG: CITY, TRIGGER: "manual"},
                         resources={"source_files": synthetic})
            for i in range(2)]
        # The build automation launches after refreshes: the models under automation, over
        # every city in the warehouse (a city's run has no dbt step).
        out["runs"]["dbt_build"] = [
            measured_run(instance, conn, out, f"dbt_build_{i}",
                         defs.resolve_implicit_global_asset_job_def(),
                         f"automation's dbt build, {filled['cities']:,} cities in the warehouse",
                         asset_selection=AUTOMATED_MODELS)
            for i in range(2)]


def inner(options: dict) -> None:
    # Progress to the terminal; what the jobs print (dbt, Dagster's console) to the log.
    global progress
    progress = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    out: dict = {"windows": {}}
    try:
        (inner_size if options["part"] == "size" else inner_data)(options, out)
    finally:  # an interrupted part keeps what it measured
        Path(options["result"]).write_text(json.dumps(out))


# --------------------------------------------------------------------------------------
# Outer part: database, the connection sampler, the UI, the printed figures.
# --------------------------------------------------------------------------------------

class ConnectionSampler(threading.Thread):
    """Samples pg_stat_activity's client connections every SAMPLE_SECONDS."""

    def __init__(self, address):
        super().__init__(daemon=True)
        self.address = address
        self.samples: list[tuple[float, dict[tuple[str, str], int]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        from refresh_assets.lib.database import connect

        with closing(connect(self.address, "postgres", application_name=SAMPLER)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("show max_connections")
                self.max_connections = int(cur.fetchone()[0])
                while not self.done.is_set():
                    cur.execute("select coalesce(datname, '-'), coalesce(nullif(application_name,"
                                " ''), '-'), count(*) from pg_stat_activity where backend_type ="
                                " 'client backend' and pid <> pg_backend_pid() group by 1, 2")
                    self.samples.append((time.time(), {(db, app): n for db, app, n
                                                       in cur.fetchall()}))
                    time.sleep(SAMPLE_SECONDS)

    def peaks(self, start: float, end: float) -> dict:
        """Peak client connections in [start, end]: in all, per database, per application."""
        window = [counts for t, counts in self.samples if start <= t <= end]
        if not window:
            return {"samples": 0}
        per_db: dict[str, int] = defaultdict(int)
        per_app: dict[str, int] = defaultdict(int)
        for counts in window:
            dbs: dict[str, int] = defaultdict(int)
            apps: dict[str, int] = defaultdict(int)
            for (db, app), n in counts.items():
                dbs[db] += n
                apps[re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<run>", app)] += n
            for db, n in dbs.items():
                per_db[db] = max(per_db[db], n)
            for app, n in apps.items():
                per_app[app] = max(per_app[app], n)
        return {"samples": len(window), "total": max(sum(c.values()) for c in window),
                "median_total": statistics.median(sum(c.values()) for c in window),
                "per_database": dict(per_db), "per_application": dict(per_app)}


def run_inner(options: dict, env: dict, folder: Path, name: str) -> dict:
    result = folder / f"{name}.json"
    log = folder / f"{name}.log"
    options = {**options, "result": str(result)}
    with log.open("w") as output:
        done = subprocess.run([sys.executable, __file__, "--inner", json.dumps(options)], env=env,
                              cwd=REPO, stderr=output, check=False)
    if done.returncode != 0:
        print(f"  the measuring subprocess failed (exit {done.returncode}); see {log}", flush=True)
    return json.loads(result.read_text()) if result.exists() else {}


PARTITION_STATS = """
query($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) {
  assetKey { path } partitionStats { numMaterialized numPartitions numFailed numMaterializing } } }
"""
PARTITION_STATUSES = """
query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename ... on AssetNode {
  partitionKeysByDimension { name partitionKeys }
  assetPartitionStatuses { __typename ... on DefaultPartitionStatuses {
    materializedPartitions failedPartitions unmaterializedPartitions materializingPartitions } } } } }
"""


def graphql_timed(url: str, query: str, repeats: int, **variables) -> dict:
    import requests

    seconds, size = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        answer = requests.post(f"{url}/graphql", json={"query": query, "variables": variables},
                               timeout=600)
        seconds.append(time.perf_counter() - started)
        size = len(answer.content)
        body = answer.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
            "n": repeats, "each": seconds, "response_bytes": size, "data": body["data"]}


def processes_of(home: Path) -> dict:
    """RSS (bytes) of this home's Dagster processes, by role, from /proc; and each process."""
    marker = f"REFRESH_HOME={home}".encode()
    found: dict[str, int] = defaultdict(int)
    each = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            rss = next(int(line.split()[1]) * 1024 for line in
                       (proc / "status").read_text().splitlines() if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        # `dagster dev` starts `python -m dagster_webserver`, `python -m dagster._daemon run`
        # and `python -m dagster api grpc` (the code server); a run is `dagster api execute_run`.
        role = ("webserver" if "-m dagster_webserver" in command
                else "daemon" if "-m dagster._daemon" in command
                else "run worker" if "execute_run" in command
                else "code server" if "-m dagster api grpc" in command
                else "dagster dev" if "dagster dev" in command else "other")
        found[role] += rss
        each.append({"pid": int(proc.name), "role": role, "rss": rss, "command": command[:160]})
    return {**found, "processes": each}


def tick_figures(instance, start: float, end: float) -> dict:
    """Each sensor's ticks in [start, end]: how long they took and how far apart they began."""
    from dagster._core.definitions.run_request import InstigatorType

    out = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        ticks = sorted(instance.get_ticks(state.instigator_origin_id, state.selector_id,
                                          after=start, before=end),
                       key=lambda t: t.timestamp)
        durations = [t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp]
        starts = [t.timestamp for t in ticks]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        out[state.instigator_name] = {
            "ticks": len(ticks), "durations": durations,
            "median": statistics.median(durations) if durations else None,
            "max": max(durations) if durations else None,
            "median_gap": statistics.median(gaps) if gaps else None,
            "statuses": sorted({t.status.value for t in ticks}),
            "requested": [t.requested_asset_materialization_count for t in ticks],
            "requested_assets": sorted({key.to_user_string() for t in ticks
                                        for key in t.requested_assets_and_partitions})}
    return out


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Each step's seconds, from its start to its success or failure in the event log."""
    import dagster as dg

    starts, ends = {}, {}
    for event in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START,
                                                    dg.DagsterEventType.STEP_SUCCESS,
                                                    dg.DagsterEventType.STEP_FAILURE}):
        (starts if event.dagster_event_type == dg.DagsterEventType.STEP_START
         else ends)[event.step_key] = event.timestamp
    return {key: ends[key] - starts[key] for key in starts if key in ends}


def city_refresh_through_daemon(env: dict, port: int, instance) -> dict:
    started = time.time()
    done = subprocess.run([CLI, "refresh", "--city", CITY_NAME, "--ui-port", str(port)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    ended = time.time()
    found = re.search(r"submitted run ([0-9a-f-]{36})", done.stdout)
    out = {"exit": done.returncode, "window": [started, ended], "seconds": ended - started}
    if found:
        record = instance.get_run_record_by_id(found.group(1))
        created = record.create_timestamp.timestamp()
        out.update(run_id=found.group(1), status=record.dagster_run.status.value,
                   submit_to_created=created - started,
                   created_to_started=(record.start_time or created) - created,
                   started_to_ended=(record.end_time or 0) - (record.start_time or 0),
                   steps=step_seconds(instance, found.group(1)))
    return out


def measure_ui(env: dict, home: Path, folder: Path, size: int, assets: list[list[str]],
               sampler: ConnectionSampler, idle: float, settle: float) -> dict:
    import dagster as dg

    from refresh_assets.lib.database import connect
    from tests.ui_fixtures import running_ui

    out: dict = {}
    started = time.time()
    with running_ui(folder / f"ui-{size}.log", env=env) as url, \
            dg.DagsterInstance.get() as instance, \
            closing(connect(sampler.address, sampler.address.dagster_db,
                            application_name="bench_scaling")) as conn:
        conn.autocommit = True
        tables = dagster_sizes(conn)
        loaded = time.time()
        out["load_seconds"] = loaded - started
        say(f"  UI loaded in {out['load_seconds']:.0f} s; {idle:.0f} s of daemon ticks")
        out["load_at_start"] = round(os.getloadavg()[0], 2)
        time.sleep(idle)
        out["idle_connections"] = sampler.peaks(loaded, time.time())
        out["rss_idle"] = processes_of(home)
        stats = graphql_timed(url, PARTITION_STATS, 3, keys=[{"path": p} for p in assets])
        out["partition_stats"] = {k: v for k, v in stats.items() if k != "data"}
        out["partition_stats"]["assets"] = {
            "/".join(n["assetKey"]["path"]): n["partitionStats"] for n in stats["data"]["assetNodes"]}
        statuses = graphql_timed(url, PARTITION_STATUSES, 3, key={"path": list(MATERIALIZED_ASSET)})
        out["partition_statuses"] = {k: v for k, v in statuses.items() if k != "data"}
        out["rss_after_graphql"] = processes_of(home)
        port = int(url.rsplit(":", 1)[1])
        out["city_refresh"] = refresh = city_refresh_through_daemon(env, port, instance)
        out["city_refresh_connections"] = sampler.peaks(*refresh["window"])
        say(f"  city refresh through the daemon: {refresh['seconds']:.1f} s "
            f"(exit {refresh['exit']}); {settle:.0f} s more of ticks")
        out["load_after_refresh"] = round(os.getloadavg()[0], 2)
        time.sleep(settle)
        if "run_id" in refresh:
            refresh["event_log"] = event_volume(conn, refresh["run_id"])
        out["ticks"] = tick_figures(instance, loaded, time.time())
        after = dagster_sizes(conn)
        out["table_growth"] = {t: after[t] - tables.get(t, 0) for t in after
                               if after[t] != tables.get(t, 0)}
        with conn.cursor() as cur:
            cur.execute("select count(*) from job_ticks")
            out["job_ticks_rows"] = cur.fetchone()[0]
        out["runs_launched"] = [
            {"job": r.dagster_run.job_name, "status": r.dagster_run.status.value,
             "trigger": r.dagster_run.tags.get("refresh/trigger")
             or r.dagster_run.tags.get("dagster/sensor_name")}
            for r in instance.get_run_records(dg.RunsFilter(
                created_after=datetime.fromtimestamp(loaded, UTC)))]
    return out


# --------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------

def mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 1024:.1f} KiB"


def print_run(run: dict, peaks: dict | None) -> None:
    log = run["event_log"]
    print(f"  {run['label']}: {'ok' if run['success'] else 'FAILED'}, {run['wall']:.1f} s "
          f"(run {run['run_seconds'] or 0:.1f} s; load {run.get('load')}); steps: " + ", ".join(
              f"{k} {s['seconds']:.1f}" for k, s in sorted(run["steps"].items(),
                                                          key=lambda kv: -kv[1]["seconds"])))
    print(f"    event log: {log['rows']:,} rows, {mib(log['bytes'])} of event bodies; "
          f"{log['tag_rows']:,} asset_event_tags rows ({mib(log['tag_bytes'])}); dagster tables "
          f"grew {mib(sum(run['table_growth'].values()))} ("
          + ", ".join(f"{t} {mib(b)}" for t, b in sorted(run["table_growth"].items(),
                                                          key=lambda kv: -kv[1])[:4]) + ")")
    print("    by type: " + ", ".join(f"{k} {v['rows']:,}/{mib(v['bytes'])}" for k, v in sorted(
        log["by_type"].items(), key=lambda kv: -kv[1]["bytes"])))
    print(f"    sessions opened: {run['sessions']}; compute logs {mib(run['compute_log_bytes'])}")
    if peaks:
        print(f"    peak connections {peaks.get('total')} (median {peaks.get('median_total')}, "
              f"{peaks['samples']} samples): per database {peaks.get('per_database')}, "
              f"per application {peaks.get('per_application')}")


def rss_by_role(found: dict) -> dict[str, str]:
    return {role: mib(rss) for role, rss in found.items() if role != "processes"}


def spread(figure: dict) -> str:
    return (f"{figure['median']:.3f} s (median; in order: "
            + ", ".join(f"{s:.3f}" for s in figure["each"]) + ")")


def report(figures: dict) -> None:
    meta = figures["meta"]
    print(f"\ndate: {meta['date']}; code: {meta['code']}; machine: {meta['machine']}")
    print(f"load average (1, 5, 15 min) at start {meta['load_start']}, at end "
          f"{meta.get('load_end')}; max_connections {meta.get('max_connections')}")
    for size, part in figures["sizes"].items():
        print(f"\n== {int(size):,} city partitions ({part.get('partitions', 0):,} registered) ==")
        print(f"definitions load (fresh process): {part.get('load_definitions', 0):.2f} s; "
              f"dagster database {mib(part.get('dagster_db_bytes', 0))}; dynamic_partitions "
              f"{part.get('dynamic_partitions_rows', 0):,} rows")
        if "add_partitions" in part:
            print(f"added {part['add_partitions']['keys']:,} partitions in "
                  f"{part['add_partitions']['seconds']:.2f} s; their "
                  f"{part['store_materializations']['events']:,} materializations (change_report,"
                  f" city_exports) in {part['store_materializations']['seconds']:.1f} s")
        if "reports_bytes" in part:
            print(f"change reports on disk: {part['reports_files']:,} files, "
                  f"{mib(part['reports_bytes'])}")
        runs = part.get("runs", {})
        for name, run in [("main_job", runs.get("main_job"))] + [
                (f"city_{i}", r) for i, r in enumerate(runs.get("city", []))] + [
                (f"dbt_build_{i}", r) for i, r in enumerate(runs.get("dbt_build", []))]:
            if run:
                print_run(run, part.get("connections", {}).get(name))
        locks = part.get("run_locks")
        if locks:
            print(f"  city locks of a run over all {locks['cities']:,} cities: "
                  + (f"taken in {locks['seconds']:.1f} s" if locks["ok"] else
                     f"FAILED after {locks['seconds']:.1f} s: {locks['error']}")
                  + f" (max_locks_per_transaction {locks['max_locks_per_transaction']}, "
                    f"max_connections {locks['max_connections']}, max_prepared_transactions "
                    f"{locks.get('max_prepared_transactions')})")
            if not locks["ok"]:
                print(f"    new connections refused for "
                      f"{locks.get('server_refused_connections_for', 0):.1f} s after; one session"
                      f" got {locks.get('locks_one_session_got'):,} advisory locks before "
                      f"'{locks.get('room_error')}'")
        for name, figure in part.get("probes", {}).items():
            print(f"  {name}: {spread(figure)}" + (f", {figure['items']:,} items"
                                                  if "items" in figure else ""))
        ui = part.get("ui")
        if ui:
            print(f"  UI: code location loaded in {ui['load_seconds']:.1f} s; idle connections "
                  f"peak {ui['idle_connections'].get('total')} "
                  f"{ui['idle_connections'].get('per_application')}")
            print(f"  UI partitionStats ({len(ui['partition_stats']['assets'])} assets): "
                  f"{spread(ui['partition_stats'])}, {mib(ui['partition_stats']['response_bytes'])}")
            print(f"  UI assetPartitionStatuses + keys (change_report): "
                  f"{spread(ui['partition_statuses'])}, "
                  f"{mib(ui['partition_statuses']['response_bytes'])}")
            print(f"  RSS idle {rss_by_role(ui['rss_idle'])}; after GraphQL "
                  f"{rss_by_role(ui['rss_after_graphql'])}")
            refresh = ui["city_refresh"]
            print(f"  city refresh through the daemon: {refresh['seconds']:.1f} s, exit "
                  f"{refresh['exit']}, status {refresh.get('status')}; submitted -> created "
                  f"{refresh.get('submit_to_created', 0):.1f} s, created -> started "
                  f"{refresh.get('created_to_started', 0):.1f} s, run "
                  f"{refresh.get('started_to_ended', 0):.1f} s; peak connections "
                  f"{ui['city_refresh_connections'].get('total')} "
                  f"{ui['city_refresh_connections'].get('per_database')}; load "
                  f"{ui.get('load_at_start')} at the UI's start, {ui.get('load_after_refresh')} "
                  "after the refresh")
            print("    its steps: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(
                refresh.get("steps", {}).items(), key=lambda kv: -kv[1])))
            for sensor, ticks in sorted(ui["ticks"].items()):
                if ticks["ticks"]:
                    print(f"  sensor {sensor}: {ticks['ticks']} ticks, median "
                          f"{ticks['median'] or 0:.2f} s, max {ticks['max'] or 0:.2f} s, median "
                          f"interval {ticks['median_gap'] or 0:.1f} s, {ticks['statuses']}"
                          + (f"; asset partitions requested per tick {ticks['requested']} "
                             f"{ticks['requested_assets']}" if any(ticks["requested"]) else ""))
            if "event_log" in refresh:
                print(f"    its event log: {refresh['event_log']['rows']:,} rows, "
                      f"{mib(refresh['event_log']['bytes'])}")
            print("  dagster tables grew while the UI ran: " + ", ".join(
                f"{t} {mib(b)}" for t, b in sorted(ui["table_growth"].items(),
                                                   key=lambda kv: -kv[1])[:5])
                  + f"; job_ticks {ui['job_ticks_rows']:,} rows")
            print(f"  runs launched while the UI ran: {ui['runs_launched']}")
    data = figures.get("data")
    if data:
        print(f"\n== warehouse of {data['fill']['cities']:,} cities (filled in "
              f"{data['fill']['seconds']:.0f} s) ==")
        runs = data.get("runs", {})
        for name, run in [(f"city_data_{i}", r) for i, r in enumerate(runs.get("city", []))] + [
                (f"dbt_build_{i}", r) for i, r in enumerate(runs.get("dbt_build", []))]:
            print_run(run, data.get("connections", {}).get(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="477,4770,48000",
                        help="city partitions to measure at (the first: the real cities)")
    parser.add_argument("--idle", type=float, default=45,
                        help="seconds of daemon ticks per size before the UI's queries")
    parser.add_argument("--settle", type=float, default=35,
                        help="seconds of daemon ticks after the city refresh through the daemon")
    parser.add_argument("--skip-ui", action="store_true", help="no webserver and daemon")
    parser.add_argument("--skip-data", action="store_true",
                        help="no warehouse of 4,770 cities at the end")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    parser.add_argument("--from-json", type=Path, metavar="JSON",
                        help="print the figures of an earlier --json file; measure nothing")
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(json.loads(args.inner))
        return
    if args.from_json:
        report(json.loads(args.from_json.read_text()))
        return

    import refresh_assets
    from refresh_assets.lib.runtime import ensure_database, runtime_environment
    from refresh_assets.settings import load_settings
    from tests.ui_fixtures import own_instance
    assert Path(refresh_assets.__file__).resolve().is_relative_to(REPO), refresh_assets.__file__
    sizes = [int(s) for s in args.sizes.split(",")]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "code": git_state(REPO),
            "machine": f"{os.cpu_count()} cores, python {sys.version.split()[0]}",
            "load_start": [round(x, 2) for x in os.getloadavg()]}
    print(f"date: {meta['date']}; code: {meta['code']}; load {meta['load_start']}", flush=True)
    synthetic_csv = None
    if not args.skip_data:
        made = subprocess.run([sys.executable, str(REPO / "benchmarks/make_synthetic_cities.py"),
                               "--cities", "4770"], capture_output=True, text=True, check=True)
        print(made.stdout.strip(), flush=True)
        synthetic_csv = WORK / "synthetic-4770" / "ca_city_fiscal_inputs.csv"

    folder = WORK / f"bench-scaling-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    home = folder / "home"
    home.mkdir(parents=True)
    figures: dict = {"meta": meta, "sizes": {}}
    # The tests' own instance: an embedded server in `home`, no entry file, no source
    # checked; `db stop` at the end, whatever happens.
    with own_instance(home) as env:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        settings = load_settings(env)
        ready = ensure_database(settings)
        env.update(runtime_environment(settings, ready.address))
        os.environ.update(env)  # this process reads the instance's ticks and runs too
        subprocess.run([CLI, "dbt", "prepare"], env=env, capture_output=True, text=True,
                       check=True)
        sampler = ConnectionSampler(ready.address)
        sampler.start()
        try:
            for size in sizes:
                print(f"\n{size:,} city partitions", flush=True)
                part = run_inner({"part": "size", "size": size}, env, folder, f"size-{size}")
                part["connections"] = {name: sampler.peaks(*window)
                                       for name, window in part.get("windows", {}).items()}
                figures["sizes"][str(size)] = part
                if not args.skip_ui and part.get("partitioned_assets"):
                    part["ui"] = measure_ui(env, home, folder, size, part["partitioned_assets"],
                                            sampler, args.idle, args.settle)
            if synthetic_csv:
                print("\nwarehouse of 4,770 cities", flush=True)
                data = run_inner({"part": "data", "synthetic_csv": str(synthetic_csv),
                                  "empty_entries_dir": str(folder / "empty-entries")},
                                 env, folder, "data")
                data["connections"] = {name: sampler.peaks(*window)
                                       for name, window in data.get("windows", {}).items()}
                figures["data"] = data
        finally:
            sampler.done.set()
            sampler.join()
            meta["max_connections"] = getattr(sampler, "max_connections", None)
            meta["load_end"] = [round(x, 2) for x in os.getloadavg()]
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2))
    if not args.keep:
        shutil.rmtree(folder / "home", ignore_errors=True)
    report(figures)
    if args.json:
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
