"""Measures a full refresh (job `refresh_all`) and a one-city refresh (job `refresh_city`).

What it measures, in one run of this script, on a throwaway embedded PostgreSQL (fresh
cluster under benchmarks/.work/, free port, stopped and removed at the end):

  a. `refresh_all` over the 477 real cities (every city partition in one run, as
     `refresh-assets materialize` runs it: a partition range from the first to the last
     registered city, then the dbt models), first on an empty warehouse, then again with
     nothing changed (--full-repeats times);
  c1. `refresh_city` for "vallejo" (--repeats times) with the 477 cities in the warehouse;
  b. `refresh_all` over N synthetic cities (--cities, default 4,770 = 10 x 477; written by
     make_synthetic_cities.py): the bulk import reads the synthetic CSV through a resource
     override (entries folder: an empty one), the synthetic keys are added as city
     partitions, and the range covers every registered city;
  c2. `refresh_city` for "vallejo" (--repeats times) with the N cities in the warehouse,
     with the same bulk-import override (a deployment of N cities has an N-city bulk file),
     and the ratio c2 / c1 per run and per step. c1 and c2 come from the same run of the
     script, a few minutes apart: compare these ratios, not figures across runs.

For every run: wall time of `execute_in_process`, the run's own start-to-end time, each
step's duration (STEP_START to STEP_SUCCESS/STEP_FAILURE in the event log) with its number
of events and the time until its first materialization, the number of events the run
wrote (by type), and, once, how long loading the definitions took.

How: the database is started and migrated with `ensure_database`, the environment the CLI
exports (`runtime_environment`) is applied, `refresh-assets dbt prepare` writes the dbt
manifest, then this script runs itself again (`--inner`) in a subprocess with that
environment: it loads the definitions and runs the jobs in process
(`job.execute_in_process(instance=..., tags=..., resources=...)`), against the instance
of dagster.yaml (the cluster's `dagster` database). What the jobs print (Dagster's console
log, dbt's output) goes to a log file in the work folder, not to the screen.

DAGSTER_EVENT_BATCH_SIZE is taken from this script's environment as is and passed to the
jobs (unset here means unset there, even where the CLI would set a default); its value is
printed. Run it once without and once with it to compare event batching.

The code measured is that of the checkout this file is in (it goes first on the import
path), so a copy of this file in another checkout or in a `git archive` snapshot measures
that code with the same venv. Usage:

    python benchmarks/bench_refresh.py [--cities 4770] [--repeats 3] [--full-repeats 1]
                                       [--skip-synthetic] [--json OUT.json] [--keep]
    DAGSTER_EVENT_BATCH_SIZE=500 python benchmarks/bench_refresh.py ...
    python benchmarks/bench_refresh.py --from-json OUT.json    # print saved figures again
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The code measured is the checkout this file is in (a copy of this file in another checkout
# or in a `git archive` snapshot measures that code), even though the venv installs the
# project in editable mode from elsewhere: REPO goes first on the import path, here and in
# every subprocess (PYTHONPATH).
sys.path.insert(0, str(REPO))
from benchmarks.common import free_port, git_state  # noqa: E402

WORK = REPO / "benchmarks" / ".work"
VENV_BIN = Path(sys.executable).parent
BATCH_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"
CITY = "vallejo"
progress = sys.stdout  # where the inner part reports progress


# --------------------------------------------------------------------------------------
# Inner part: runs in the subprocess, with the runtime environment exported.
# --------------------------------------------------------------------------------------

def measure_run(instance, job, label: str, **execute_kwargs) -> dict:
    """Runs the job in process; returns its timings and event counts from the event log."""
    from dagster import DagsterEventType

    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, raise_on_error=False, **execute_kwargs)
    wall = time.perf_counter() - started
    run_id = result.run_id
    logs = instance.all_logs(run_id)
    by_type = Counter(e.dagster_event_type.value if e.dagster_event_type else "LOG_MESSAGE"
                      for e in logs)
    steps: dict[str, dict] = {}
    for entry in logs:
        key = entry.step_key
        if not key:
            continue
        step = steps.setdefault(key, {"events": 0})
        step["events"] += 1
        kind = entry.dagster_event_type
        if kind == DagsterEventType.STEP_START:
            step["start"] = entry.timestamp
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            step["end"] = entry.timestamp
            step["status"] = "ok" if kind == DagsterEventType.STEP_SUCCESS else "FAILED"
        elif kind == DagsterEventType.ASSET_MATERIALIZATION and "first_output" not in step:
            step["first_output"] = entry.timestamp
    step_figures = {}
    for key, step in steps.items():
        if "start" not in step or "end" not in step:
            continue
        step_figures[key] = {
            "seconds": step["end"] - step["start"],
            "events": step["events"],
            "to_first_materialization": (step["first_output"] - step["start"])
            if "first_output" in step else None,
            "status": step.get("status"),
        }
    record = instance.get_run_record_by_id(run_id)
    run_seconds = (record.end_time - record.start_time) \
        if record and record.start_time and record.end_time else None
    figures = {
        "label": label, "run_id": run_id, "success": result.success, "wall": wall,
        "run_seconds": run_seconds, "events": len(logs), "events_by_type": dict(by_type),
        "steps": step_figures,
    }
    print(f"  {label}: {'ok' if result.success else 'FAILED'} in {wall:.1f} s, "
          f"{len(logs):,} events", file=progress)
    return figures


def inner(options: dict) -> None:
    # Progress lines go to the terminal; everything else the jobs print (dbt's output on
    # stdout, Dagster's console log on stderr) goes to the log file the caller gave as stderr.
    global progress
    progress = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    started = time.perf_counter()
    from dagster import DagsterInstance

    from refresh_assets.definitions import defs
    from refresh_assets.defs.resources import SourceFilesResource
    from refresh_assets.lib.cities import CITY_PARTITIONS, city_key, city_keys_with_data
    from refresh_assets.lib.run_tags import CITY as CITY_TAG
    from refresh_assets.lib.run_tags import TRIGGER as TRIGGER_TAG
    from refresh_assets.settings import load_settings

    main_job = defs.resolve_job_def("refresh_all")
    city_job = defs.resolve_job_def("refresh_city")
    load_seconds = time.perf_counter() - started
    print(f"  definitions loaded in {load_seconds:.1f} s", file=progress)
    out: dict = {"load_definitions": load_seconds, "runs": {}}
    runs = out["runs"]

    def save() -> None:  # after every run: an interrupted measurement keeps what it measured
        Path(options["result"]).write_text(json.dumps(out))

    def all_cities_tags(instance) -> dict[str, str]:
        cities = instance.get_dynamic_partitions(CITY_PARTITIONS)
        return {"dagster/asset_partition_range_start": cities[0],
                "dagster/asset_partition_range_end": cities[-1], TRIGGER_TAG: "manual"}

    def city_runs(instance, name: str, label: str, resources: dict) -> None:
        runs[name] = []
        for i in range(options["repeats"]):
            runs[name].append(measure_run(
                instance, city_job, f"{label} #{i + 1}", partition_key=CITY,
                tags={CITY_TAG: CITY, TRIGGER_TAG: "manual"}, resources=resources))
            save()

    settings = load_settings()
    with DagsterInstance.get() as instance:
        # a. The real cities, registered as the CLI registers them.
        real = city_keys_with_data(settings.entries_dir)
        instance.add_dynamic_partitions(CITY_PARTITIONS, real)
        m = out["real_cities"] = len(instance.get_dynamic_partitions(CITY_PARTITIONS))
        tags = all_cities_tags(instance)
        runs["full_real_empty"] = measure_run(instance, main_job,
                                              f"full refresh, {m}, empty warehouse", tags=tags)
        save()
        runs["full_real_unchanged"] = []
        for i in range(options["full_repeats"]):
            runs["full_real_unchanged"].append(measure_run(
                instance, main_job, f"full refresh, {m}, nothing changed #{i + 1}", tags=tags))
            save()
        # c1. One city with the real cities in the warehouse.
        city_runs(instance, "city_real", f"refresh_city {CITY}, {m} in warehouse", {})

        if options["synthetic_csv"]:
            # b. N synthetic cities through the bulk import.
            import pandas as pd

            csv = Path(options["synthetic_csv"])
            empty_entries = Path(options["empty_entries_dir"])
            empty_entries.mkdir(parents=True, exist_ok=True)
            synthetic = SourceFilesResource(entries_dir=str(empty_entries),
                                            bulk_import_csv=str(csv))
            names = pd.read_csv(csv, usecols=["city"], dtype=str)["city"].drop_duplicates()
            known = set(instance.get_dynamic_partitions(CITY_PARTITIONS))
            keys = [k for k in names.map(city_key) if k not in known]
            instance.add_dynamic_partitions(CITY_PARTITIONS, keys)
            out["synthetic_cities"] = len(instance.get_dynamic_partitions(CITY_PARTITIONS))
            n = out["synthetic_cities"]
            runs["full_synthetic"] = measure_run(
                instance, main_job, f"full refresh, {n} cities ({m} already in warehouse)",
                tags=all_cities_tags(instance), resources={"source_files": synthetic})
            save()
            # c2. One city with N cities in the warehouse.
            city_runs(instance, "city_synthetic", f"refresh_city {CITY}, {n} in warehouse",
                      {"source_files": synthetic})


# --------------------------------------------------------------------------------------
# Outer part: database, environment, manifest, the inner subprocess, the printed figures.
# --------------------------------------------------------------------------------------

def spread(values: list[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:8.2f}"
    return (f"{median:8.2f} (median; min {min(values):.2f}, max {max(values):.2f}, "
            f"n={len(values)}: {', '.join(f'{v:.2f}' for v in values)})")


def print_run(run: dict) -> None:
    print(f"\n{run['label']}: {'success' if run['success'] else 'FAILED'}")
    wall, run_seconds = run["wall"], run["run_seconds"]
    shown = f"{run_seconds:.2f} s" if run_seconds is not None else "?"
    print(f"  execute_in_process {wall:.2f} s; run start to end {shown}; "
          f"{run['events']:,} events written")
    kinds = sorted(run["events_by_type"].items(), key=lambda kv: -kv[1])
    print("  events: " + ", ".join(f"{kind} {count:,}" for kind, count in kinds))
    header = "step (events: with its key, planned ones included)"
    print(f"  {header:52s} {'seconds':>8s} {'share':>6s} {'events':>7s} {'to 1st mat.':>11s}")
    if run_seconds is not None:
        # execute_in_process creates the run first, writing an ASSET_MATERIALIZATION_PLANNED
        # event per asset partition, before the run starts.
        print(f"  {'(before the run starts: run creation)':52s} {wall - run_seconds:8.2f} "
              f"{100 * (wall - run_seconds) / wall:5.1f}%")
    in_steps = 0.0
    for key, step in sorted(run["steps"].items(), key=lambda kv: -kv[1]["seconds"]):
        first = step["to_first_materialization"]
        in_steps += step["seconds"]
        print(f"  {key:52s} {step['seconds']:8.2f} {100 * step['seconds'] / wall:5.1f}% "
              f"{step['events']:7,d} {f'{first:.2f}' if first is not None else '-':>11s}"
              + ("" if step["status"] == "ok" else f"  {step['status']}"))
    if run_seconds is not None:
        print(f"  {'(in the run, outside steps)':52s} {run_seconds - in_steps:8.2f} "
              f"{100 * (run_seconds - in_steps) / wall:5.1f}%")


def print_city_comparison(small: list[dict], large: list[dict], real: int, cities: int) -> None:
    print(f"\none-city refresh ({CITY}): {real} vs {cities:,} cities in the warehouse, "
          "median (min-max) of the repeats")
    print(f"  {'':45s} {real:>18d} {f'{cities:,}':>18s} {'ratio':>6s}")

    def row(name: str, a: list[float], b: list[float]) -> None:
        if not a or not b:
            return
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"  {name:45s} {ma:6.2f} ({min(a):.2f}-{max(a):.2f}) "
              f"{mb:6.2f} ({min(b):.2f}-{max(b):.2f}) {mb / ma:6.2f}")

    row("execute_in_process", [r["wall"] for r in small], [r["wall"] for r in large])
    row("run start to end", [r["run_seconds"] for r in small if r["run_seconds"]],
        [r["run_seconds"] for r in large if r["run_seconds"]])
    for key in small[0]["steps"]:
        row(f"  {key}", [r["steps"][key]["seconds"] for r in small if key in r["steps"]],
            [r["steps"][key]["seconds"] for r in large if key in r["steps"]])
    print(f"  events per run: {[r['events'] for r in small]} vs {[r['events'] for r in large]}")


def print_meta(meta: dict) -> None:
    print(f"date: {meta['date']}; code: {meta['code']}")
    print(f"machine: {meta['machine']}; load average (1, 5, 15 min) at start "
          f"{meta['load_average_at_start']}"
          + (f", at end {meta['load_average_at_end']}" if "load_average_at_end" in meta else ""))
    batch = meta[BATCH_VARIABLE]
    print(f"{BATCH_VARIABLE}: {batch if batch is not None else 'unset'}")


def report(figures: dict) -> None:
    """Prints the figures of one run of the script (also those of a --json file)."""
    runs = figures["runs"]
    m = figures.get("real_cities", 477)
    if "meta" in figures:
        print()
        print_meta(figures["meta"])
    print(f"\ndefinitions load: {figures['load_definitions']:.2f} s")
    for run in [runs["full_real_empty"], *runs.get("full_real_unchanged", [])]:
        print_run(run)
    if "full_synthetic" in runs:
        print_run(runs["full_synthetic"])
    if runs.get("city_real"):
        print_run(runs["city_real"][0])
    if runs.get("city_synthetic") and runs.get("city_real"):
        print_run(runs["city_synthetic"][0])
        print_city_comparison(runs["city_real"], runs["city_synthetic"], m,
                              figures["synthetic_cities"])
    elif runs.get("city_real"):
        print(f"\none-city refresh ({CITY}), {m} in the warehouse: "
              + spread([r["wall"] for r in runs["city_real"]]))

    print("\nsummary (seconds):")
    print(f"  {'definitions load':45s} {figures['load_definitions']:8.2f}")
    print(f"  {f'full refresh {m}, empty warehouse':45s} {runs['full_real_empty']['wall']:8.2f}"
          f"  ({runs['full_real_empty']['events']:,} events)")
    if runs.get("full_real_unchanged"):
        print(f"  {f'full refresh {m}, nothing changed':45s} "
              + spread([r["wall"] for r in runs["full_real_unchanged"]])
              + f"  ({runs['full_real_unchanged'][0]['events']:,} events)")
    if "full_synthetic" in runs:
        label = f"full refresh {figures['synthetic_cities']:,} ({m} already there)"
        print(f"  {label:45s} {runs['full_synthetic']['wall']:8.2f}"
              f"  ({runs['full_synthetic']['events']:,} events)")
    if runs.get("city_real"):
        print(f"  {f'refresh_city {CITY}, {m} in warehouse':45s} "
              + spread([r["wall"] for r in runs["city_real"]]))
    if runs.get("city_synthetic") and runs.get("city_real"):
        small = statistics.median(r["wall"] for r in runs["city_real"])
        large = statistics.median(r["wall"] for r in runs["city_synthetic"])
        label = f"refresh_city {CITY}, {figures['synthetic_cities']:,} in warehouse"
        print(f"  {label:45s} " + spread([r["wall"] for r in runs["city_synthetic"]]))
        print(f"  {'ratio of the medians':45s} {large / small:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=4770,
                        help="synthetic cities for the large refresh (default 4770)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="one-city refreshes per warehouse size (default 3)")
    parser.add_argument("--full-repeats", type=int, default=1,
                        help="full refreshes of the real cities with nothing changed (default 1)")
    parser.add_argument("--skip-synthetic", action="store_true",
                        help="only the real cities: no synthetic full refresh, no comparison")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (cluster, reports, Dagster log) afterwards")
    parser.add_argument("--from-json", type=Path, metavar="JSON",
                        help="print the figures of an earlier --json file; measure nothing")
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(json.loads(args.inner))
        return

    from refresh_assets.lib.runtime import embedded_server, ensure_database, runtime_environment
    from refresh_assets.settings import load_settings

    if args.from_json:
        report(json.loads(args.from_json.read_text()))
        return

    import refresh_assets
    assert Path(refresh_assets.__file__).resolve().is_relative_to(REPO), refresh_assets.__file__
    batch = os.environ.get(BATCH_VARIABLE)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "code": git_state(REPO),
        "machine": f"{os.cpu_count()} cores, python {sys.version.split()[0]}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        BATCH_VARIABLE: batch,
    }
    print_meta(meta)

    WORK.mkdir(parents=True, exist_ok=True)
    synthetic_csv = None
    if not args.skip_synthetic:
        made = subprocess.run([sys.executable, str(REPO / "benchmarks/make_synthetic_cities.py"),
                               "--cities", str(args.cities)],
                              capture_output=True, text=True, check=True)
        print(made.stdout.strip())
        synthetic_csv = WORK / f"synthetic-{args.cities}" / "ca_city_fiscal_inputs.csv"

    folder = WORK / f"bench-refresh-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    env = {**os.environ, "REFRESH_HOME": str(folder / "home"),
           "REFRESH_PG_PORT": str(free_port())}
    env.pop("REFRESH_DATABASE_URL", None)
    env.pop("REFRESH_REPORTS_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    settings = load_settings(env)
    started = time.perf_counter()
    ready = ensure_database(settings)
    print(f"database: {ready.what_happened} ({time.perf_counter() - started:.1f} s)")
    try:
        env.update(runtime_environment(settings, ready.address))
        if batch is None:
            env.pop(BATCH_VARIABLE, None)  # as is: unset here is unset for the jobs
        else:
            env[BATCH_VARIABLE] = batch
        started = time.perf_counter()
        subprocess.run([str(VENV_BIN / "refresh-assets"), "dbt", "prepare"], env=env,
                       capture_output=True, text=True, check=True)
        print(f"dbt prepare: {time.perf_counter() - started:.1f} s")

        result = folder / "result.json"
        dagster_log = folder / "dagster.log"
        options = {"repeats": args.repeats, "full_repeats": args.full_repeats,
                   "synthetic_csv": str(synthetic_csv) if synthetic_csv else None,
                   "empty_entries_dir": str(folder / "empty-entries"), "result": str(result)}
        print(f"running the jobs in process (Dagster's and dbt's output: {dagster_log})",
              flush=True)
        with dagster_log.open("w") as log:
            inner_run = subprocess.run([sys.executable, __file__, "--inner", json.dumps(options)],
                                       env=env, cwd=REPO, stderr=log, check=False)
        if inner_run.returncode != 0:
            message = (f"the measuring subprocess failed (exit {inner_run.returncode}); "
                       f"see {dagster_log}")
            if not result.exists():
                sys.exit(message)
            print(message + "; the runs it finished follow")
        figures = json.loads(result.read_text())
        meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        embedded_server(settings).stop()
        if not args.keep:
            shutil.rmtree(folder / "home", ignore_errors=True)

    figures["meta"] = meta
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
