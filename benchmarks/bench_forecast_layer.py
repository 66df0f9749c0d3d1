"""Measures the dbt forecast layer (issue 10) at 477 real cities and at N synthetic ones.

For each size, on a throwaway embedded PostgreSQL of its own (fresh cluster under
benchmarks/.work/, free port, stopped and removed at the end), in one run of this script:

  0. the warehouse is filled by the project's own library functions, as the Python assets
     of the main job call them (raw/fiscal_entries, analytics/validated_fiscal_data,
     analytics/risk_scores, analytics/statewide_growth_medians, analytics/projections):
     bulk CSV and entry files appended to raw.fiscal_entries, validated, scored, the
     statewide medians, every city projected and appended with its current-run pointer
     (analytics.current_projections). The Dagster run itself (run creation, event log,
     the change reports: 10-15 min at 4,770 cities, see bench_refresh.py) is left out.
     Then ANALYZE of the analytics tables (autovacuum would do it within a minute).
  1a. `dbt build` of the whole project on an empty marts schema (unit tests excluded, as
     the pipeline runs it; it takes today's snapshot too);
  -  the warehouse is then copied (CREATE DATABASE ... TEMPLATE, same server) and the
     copy's history grows to --history projection runs per city: each extra run
     re-projects every city with the same library functions and appends it with
     analytics_store.append_projections under a new run id, in its own transaction, as a
     refresh with changed projections does (the figures are the same each time). Steps
     1b and 4 alternate between the two databases, so 1 run and --history runs per city
     are compared under the same machine load;
  4. a one-city read, `select * from marts.city_forecast where city = 'Vallejo'` (and
     by city_key, and through marts.city_forecast_v1): median of --reads runs, client
     wall time (execute + fetch, one connection per database), then EXPLAIN ANALYZE
     --explains times (median planning and execution time); against, in the same run,
     the old way: the previous marts.city_forecast (commit fbfb7ba) inlined, which ranks
     the whole projection history (dense_rank over projection_years and
     projection_summaries partitioned by city_key) and then keeps rank 1 and the city
     (--old-reads runs); and, for the contrast of a full read, every city's rows counted
     (`select count(*), sum(fund_balance_low) from marts.city_forecast`), as the tests, the
     aggregates and the snapshot read them (--old-reads runs);
  1b. `dbt build --select +city_forecast+ +forecast_cliff_aggregates +risk_level_aggregates
     --exclude city_forecast_snapshots`: the forecast layer as the main job builds it
     (both versions of city_forecast, their staging and intermediate views,
     forecast_fiscal_year_aggregates, forecast_cliff_aggregates, risk_level_aggregates,
     forecast_backtest, and every test on them), --builds times on each database;
  3. `refresh materialized view concurrently` of each of the three aggregates, and a
     plain refresh for contrast (--refreshes times each, alternating, in SQL);
  2. one day's snapshot, `dbt build --select city_forecast_snapshots --vars
     '{snapshot_date: D}'` (with its tests and retention post-hook), for two new days and
     a re-take, then again with --days-kept days in the table (copies of a day inserted
     in SQL) with the plan of dbt's delete, and forecast_backtest over those days; rows
     and sizes of a day and of the table.

dbt runs as the CLI runs it (the environment of `runtime_environment`), with its target
(one per database) and log folders in the work folder: the checkout's dbt_project/target
is not touched. Each dbt figure is the wall time of the `dbt` process (start-up and
parsing included: a new `--vars` value makes dbt parse the whole project again) beside
dbt's own elapsed time and per-node times (run_results.json).

The code measured is the checkout this file is in; to measure one commit while others
edit the working tree, run a copy of this file in a `git archive` of that commit.
Usage:

    python benchmarks/bench_forecast_layer.py [--cities 4770] [--skip-synthetic]
        [--history 5] [--reads 200] [--old-reads 20] [--explains 20] [--builds 2]
        [--refreshes 3] [--days-kept 30] [--json OUT.json] [--keep]
    python benchmarks/bench_forecast_layer.py --from-json OUT.json   # print saved figures
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
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the code measured is the checkout this file is in
from benchmarks.common import free_port, git_state  # noqa: E402

WORK = REPO / "benchmarks" / ".work"
VENV_BIN = Path(sys.executable).parent
DBT_PROJECT = REPO / "dbt_project"
CITY, CITY_KEY = "Vallejo", "vallejo"
AGGREGATES = ("forecast_cliff_aggregates", "forecast_fiscal_year_aggregates",
              "risk_level_aggregates")
LAYER = ["--select", "+city_forecast+ +forecast_cliff_aggregates +risk_level_aggregates",
         "--exclude", "city_forecast_snapshots"]
SNAPSHOTS = "marts.city_forecast_snapshots"

NEW_READ = "select * from marts.city_forecast where city = %s"
NEW_READ_BY_KEY = "select * from marts.city_forecast where city_key = %s"
V1_READ = "select * from marts.city_forecast_v1 where city = %s"
# The previous marts.city_forecast (fbfb7ba: models/marts/city_forecast.sql over
# stg_analytics__projection_years/_summaries, i.e. macros/with_run_rank.sql), inlined.
OLD_READ = """
with years as (
    select timed.*, dense_rank() over (
        partition by city_key order by run_recorded_at desc, run_id desc) as run_rank
    from (select source.*, max(projected_at) over (partition by city_key, run_id)
              as run_recorded_at
          from analytics.projection_years as source) as timed
), summaries as (
    select timed.*, dense_rank() over (
        partition by city_key order by run_recorded_at desc, run_id desc) as run_rank
    from (select source.*, max(projected_at) over (partition by city_key, run_id)
              as run_recorded_at
          from analytics.projection_summaries as source) as timed
), latest_years as (
    select * from years where run_rank = 1
), latest_summaries as (
    select * from summaries where run_rank = 1
), final as (
    select latest_years.city, latest_years.scenario, latest_years.base_year,
           latest_years.k as years_ahead, latest_years.fiscal_year, latest_years.revenue,
           latest_years.expenditures, latest_years.pension_expenditures,
           latest_years.fund_balance, latest_summaries.cliff_year,
           latest_summaries.reserve_breach_year, latest_summaries.severity,
           latest_summaries.methodology_version, latest_years.projected_at
    from latest_years
    inner join latest_summaries using (city_key, run_id, scenario)
)
select * from final where city = %s
"""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def say(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------
# 0. The warehouse, filled by the library functions the Python assets call
# --------------------------------------------------------------------------------------

def load_warehouse(address, bulk_csv: Path, entries_dir: Path) -> dict:
    """raw -> validated -> scores -> medians -> projections for every city, one run id."""
    import pandas as pd

    from refresh_assets.lib import analytics_store
    from refresh_assets.lib.cities import city_key
    from refresh_assets.lib.database import warehouse_connection
    from refresh_assets.lib.entries import check_entry_files, entries_to_frame, find_entry_files
    from refresh_assets.lib.fiscal_inputs import bulk_rows_as_versions, read_fiscal_inputs_csv
    from refresh_assets.lib.fiscal_store import (
        append_entry_versions,
        form_problems_as_issues,
        load_entry_versions,
        load_validated,
        record_city_validations,
        record_issues,
        replace_validated,
    )
    from refresh_assets.lib.scoring import score_cities
    from refresh_assets.lib.validation import ValidationPolicy, first_error_per_city, validate_cities
    from refresh_assets.lib.valuation_entries import (
        check_valuation_files,
        find_valuation_files,
        valuations_to_frame,
    )
    from refresh_assets.lib.valuation_store import append_valuation_versions

    run_id = str(uuid.uuid4())
    steps: dict[str, float] = {}
    started = time.perf_counter()
    # raw/fiscal_entries
    bulk = read_fiscal_inputs_csv(bulk_csv)
    folders = {p.name for p in entries_dir.iterdir() if p.is_dir()} if entries_dir.is_dir() \
        else set()
    cities = sorted(set(bulk["city"].map(city_key)) | folders)
    paths = [p for c in cities for p in find_entry_files(entries_dir / c)]
    parsed, problems = check_entry_files(paths, entries_dir)
    valuation_paths = [p for c in cities for p in find_valuation_files(entries_dir / c)]
    valuations, valuation_problems = check_valuation_files(valuation_paths, entries_dir)
    issues = form_problems_as_issues([*problems, *valuation_problems])
    held = set(first_error_per_city(issues, key="city_key"))
    incoming = pd.concat([bulk_rows_as_versions(bulk, bulk_csv.name), entries_to_frame(parsed)],
                         ignore_index=True)
    with warehouse_connection(address) as conn:
        added = append_entry_versions(conn, incoming)
        append_valuation_versions(conn, run_id, valuations_to_frame(valuations))
        record_issues(conn, run_id, issues)
    steps["raw"] = time.perf_counter() - started

    # analytics/validated_fiscal_data
    mark = time.perf_counter()
    with warehouse_connection(address) as conn:
        outcome = validate_cities(load_entry_versions(conn, cities), ValidationPolicy())
        refused = outcome.refused.assign(city_key=outcome.refused["city"].map(city_key))
        held |= set(first_error_per_city(refused, key="city_key"))
        replace_validated(conn, cities, outcome.valid)
        record_issues(conn, run_id, outcome.recorded)
        record_city_validations(conn, run_id, cities)
    steps["validation"] = time.perf_counter() - mark
    kept = [c for c in cities if c not in held]

    # analytics/risk_scores
    mark = time.perf_counter()
    with warehouse_connection(address) as conn:
        scored = score_cities(load_validated(conn, kept))
        analytics_store.append_changed_scores(conn, run_id, scored.scores)
    steps["scores"] = time.perf_counter() - mark

    # analytics/statewide_growth_medians
    mark = time.perf_counter()
    priors = statewide_priors_of(address)
    with warehouse_connection(address) as conn:
        analytics_store.append_priors(conn, run_id, priors)
    steps["medians"] = time.perf_counter() - mark

    # analytics/projections
    mark = time.perf_counter()
    projected = project_all(address, kept)
    with warehouse_connection(address) as conn:
        changed = analytics_store.append_changed_projections(
            conn, run_id, projected.yearly, projected.summary)
        failed = {city_key(city) for city in projected.errors}
        analytics_store.advance_current_scores(conn, [c for c in kept if c not in failed])
    steps["projections"] = time.perf_counter() - mark
    return {"seconds": time.perf_counter() - started, "steps": steps, "cities": len(cities),
            "versions_added": len(added), "entry_files": len(paths),
            "valuation_files": len(valuation_paths), "held_back": sorted(held),
            "projected": len(changed), "projection_errors": len(projected.errors),
            "kept": kept}


def statewide_priors_of(address):
    import pandas as pd

    from refresh_assets.lib.cities import city_key
    from refresh_assets.lib.database import warehouse_connection
    from refresh_assets.lib.fiscal_store import load_validated
    from refresh_assets.lib.projections import statewide_priors
    from refresh_assets.lib.valuation_store import load_current_valuations
    from refresh_assets.settings import DATA_DIR

    with warehouse_connection(address) as conn:
        validated = load_validated(conn)
        valuations = load_current_valuations(conn, sorted(set(validated["city"].map(city_key))))
    return statewide_priors(validated, pd.read_csv(DATA_DIR / "calpers_valuations_2016.csv"),
                            valuations)


def project_all(address, cities: list[str]):
    import pandas as pd

    from refresh_assets.lib import analytics_store
    from refresh_assets.lib.database import warehouse_connection
    from refresh_assets.lib.fiscal_store import load_validated
    from refresh_assets.lib.projections import project_cities
    from refresh_assets.lib.valuation_store import load_current_valuations
    from refresh_assets.settings import DATA_DIR

    calpers = pd.read_csv(DATA_DIR / "calpers_valuations_2016.csv")
    with warehouse_connection(address) as conn:
        validated = load_validated(conn, cities)
        valuations = load_current_valuations(conn, cities)
        return project_cities(validated, analytics_store.latest_priors(conn), calpers,
                              valuations)


def deepen_history(address, cities: list[str], runs: int) -> list[float]:
    """Appends `runs` more projection runs of every city, each in its own transaction
    (so its own projected_at) and moving each city's current-run pointer."""
    from refresh_assets.lib import analytics_store
    from refresh_assets.lib.database import warehouse_connection

    seconds = []
    for _ in range(runs):
        mark = time.perf_counter()
        projected = project_all(address, cities)
        with warehouse_connection(address) as conn:
            analytics_store.append_projections(conn, str(uuid.uuid4()), projected.yearly,
                                               projected.summary)
        seconds.append(time.perf_counter() - mark)
    return seconds


# --------------------------------------------------------------------------------------
# SQL helpers
# --------------------------------------------------------------------------------------

def connect(address):
    from refresh_assets.lib.database import connect as project_connect

    conn = project_connect(address)
    conn.autocommit = True
    return conn


def one(conn, query: str, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()[0]


def analyze_analytics(conn) -> None:
    with conn.cursor() as cur:
        for table in ("projection_years", "projection_summaries", "current_projections",
                      "risk_scores", "validated_fiscal_data"):
            cur.execute(f"analyze analytics.{table}")


def history_figures(conn) -> dict:
    return {
        "projection_years_rows": one(conn, "select count(*) from analytics.projection_years"),
        "projection_summaries_rows": one(conn,
                                         "select count(*) from analytics.projection_summaries"),
        "runs_per_city_max": one(conn, "select max(n) from (select count(distinct run_id) as n"
                                       " from analytics.projection_summaries group by city_key) t"),
        "current_cities": one(conn, "select count(*) from analytics.current_projections"),
        "projection_years_bytes": one(
            conn, "select pg_total_relation_size('analytics.projection_years')"),
    }


# Every city but one, counted (the band's joins evaluated): what the tests, the aggregates
# and the snapshot read.
ALL_READ = ("select count(*), sum(fund_balance_low) from marts.city_forecast"
            " where city_key <> %s")
READS = {"new": (NEW_READ, CITY), "new_by_key": (NEW_READ_BY_KEY, CITY_KEY),
         "v1": (V1_READ, CITY), "old": (OLD_READ, CITY), "all_cities": (ALL_READ, CITY_KEY)}
FEW_RUNS = ("old", "all_cities")  # slow reads: --old-reads runs, --explains / 5 EXPLAINs


def explain(conn, query: str, params, runs: int) -> dict:
    """EXPLAIN ANALYZE `runs` times: median planning and execution times, the last plan."""
    planning, execution, plan = [], [], ""
    with conn.cursor() as cur:
        for _ in range(runs):
            cur.execute("explain (analyze, buffers) " + query, params)
            plan = "\n".join(line for (line,) in cur.fetchall())
            planning.append(_plan_time(plan, "Planning Time"))
            execution.append(_plan_time(plan, "Execution Time"))
    return {"planning_ms": median(planning), "execution_ms": median(execution), "plan": plan}


def _plan_time(plan: str, label: str) -> float:
    for line in plan.splitlines():
        if line.strip().startswith(label + ":"):
            return float(line.split(":")[1].split()[0])
    return float("nan")


def reads(conns: dict[int, object], runs: int, old_runs: int, explains: int) -> dict:
    """Each read, alternating between the databases of each history depth (one connection
    each, same server): median client wall time (execute + fetch), then EXPLAIN ANALYZE."""
    out: dict = {depth: {} for depth in conns}
    for name, (query, value) in READS.items():
        n = old_runs if name in FEW_RUNS else runs
        seconds: dict[int, list[float]] = {depth: [] for depth in conns}
        rows: dict[int, int] = {}
        for _ in range(n):
            for depth, conn in conns.items():
                with conn.cursor() as cur:
                    mark = time.perf_counter()
                    cur.execute(query, (value,))
                    rows[depth] = len(cur.fetchall())
                    seconds[depth].append(time.perf_counter() - mark)
        for depth, conn in conns.items():
            server = explain(conn, query, (value,), max(1, explains // 5) if name in FEW_RUNS
                             else explains)
            out[depth][name] = {"median": median(seconds[depth]), "min": min(seconds[depth]),
                                "max": max(seconds[depth]), "runs": n, "rows": rows[depth],
                                **server}
            say(f"    {depth} run(s)/city, read {name:10s} median "
                f"{1000 * median(seconds[depth]):9.2f} ms (EXPLAIN ANALYZE: planning "
                f"{server['planning_ms']:.2f} ms, execution {server['execution_ms']:.2f} ms; "
                f"{rows[depth]} rows, n={n})")
    return out


def refresh_aggregates(conn, repeats: int) -> dict:
    out = {}
    with conn.cursor() as cur:
        for view in AGGREGATES:
            times: dict[str, list[float]] = {"concurrently": [], "plain": []}
            for _ in range(repeats):
                for how, statement in (("concurrently", "refresh materialized view concurrently"),
                                       ("plain", "refresh materialized view")):
                    mark = time.perf_counter()
                    cur.execute(f"{statement} marts.{view}")
                    times[how].append(time.perf_counter() - mark)
            out[view] = {**times, "rows": one(conn, f"select count(*) from marts.{view}"),
                         "bytes": one(conn, f"select pg_total_relation_size('marts.{view}')")}
            say(f"    refresh {view}: concurrently {median(times['concurrently']):.3f} s, "
                f"plain {median(times['plain']):.3f} s, {out[view]['rows']:,} rows")
    return out


def snapshot_figures(conn, day: date) -> dict:
    return {
        "day_rows": one(conn, f"select count(*) from {SNAPSHOTS} where snapshot_date = %s",
                        (day,)),
        "day_tuple_bytes": one(conn, f"select coalesce(sum(pg_column_size(s.*)), 0) "
                                     f"from {SNAPSHOTS} as s where snapshot_date = %s", (day,)),
        "days": one(conn, f"select count(distinct snapshot_date) from {SNAPSHOTS}"),
        "table_rows": one(conn, f"select count(*) from {SNAPSHOTS}"),
        "table_bytes": one(conn, f"select pg_total_relation_size('{SNAPSHOTS}')"),
        "table_heap_bytes": one(conn, f"select pg_relation_size('{SNAPSHOTS}')"),
    }


def fill_snapshot_days(conn, source_day: date, days_kept: int) -> dict:
    """Copies of `source_day`'s rows for older days, until `days_kept` days are kept."""
    with conn.cursor() as cur:
        cur.execute("select column_name from information_schema.columns where table_schema ="
                    " 'marts' and table_name = 'city_forecast_snapshots' and column_name <>"
                    " 'snapshot_date' order by ordinal_position")
        columns = ", ".join(f'"{c}"' for (c,) in cur.fetchall())
        have = one(conn, f"select count(distinct snapshot_date) from {SNAPSHOTS}")
        oldest = one(conn, f"select min(snapshot_date) from {SNAPSHOTS}")
        missing = days_kept - have
        mark = time.perf_counter()
        if missing > 0:
            cur.execute(f"""
                insert into {SNAPSHOTS} (snapshot_date, {columns})
                select %s::date - day, {columns}
                from {SNAPSHOTS} cross join generate_series(1, %s) as day
                where snapshot_date = %s
            """, (oldest, missing, source_day))
        cur.execute(f"analyze {SNAPSHOTS}")
    return {"days_added": max(missing, 0), "seconds": time.perf_counter() - mark}


def snapshot_delete_plan(conn, day: date) -> str:
    """The plan of dbt's delete+insert delete for one day (as dbt words it, against a fresh
    temporary table of that day's rows), run in a transaction that is rolled back."""
    with conn.cursor() as cur:
        cur.execute("begin")
        try:
            cur.execute(f"create temporary table day_rows as select * from {SNAPSHOTS}"
                        " where snapshot_date = %s", (day,))
            cur.execute(f"explain (analyze, buffers) delete from {SNAPSHOTS} as dest where"
                        " (snapshot_date) in (select distinct snapshot_date from day_rows)")
            return "\n".join(line for (line,) in cur.fetchall())
        finally:
            cur.execute("rollback")


# --------------------------------------------------------------------------------------
# dbt
# --------------------------------------------------------------------------------------

def run_dbt(env: dict, args: list[str], log: Path, label: str) -> dict:
    excluded = ["--exclude-resource-type", "unit_test"] if args[0] == "build" else []
    command = [str(VENV_BIN / "dbt"), *args, *excluded,
               "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT)]
    results_file = Path(env["DBT_TARGET_PATH"]) / "run_results.json"
    results_file.unlink(missing_ok=True)
    mark = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n\n===== {label}: {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                              check=False)
    wall = time.perf_counter() - mark
    figures: dict = {"label": label, "wall": wall, "exit": done.returncode, "nodes": {}}
    if results_file.exists():
        results = json.loads(results_file.read_text())
        figures["dbt_elapsed"] = results.get("elapsed_time")
        for node in results["results"]:
            figures["nodes"][node["unique_id"]] = {"seconds": node["execution_time"],
                                                   "status": node["status"]}
    bad = {k: v["status"] for k, v in figures["nodes"].items()
           if v["status"] not in ("success", "pass", "no-op")}
    figures["not_ok"] = bad
    say(f"  dbt {label}: {wall:.1f} s wall (exit {done.returncode}; dbt's elapsed "
        f"{figures.get('dbt_elapsed') or 0:.1f} s, {len(figures['nodes'])} nodes"
        + (f", NOT OK: {bad}" if bad else "") + ")")
    return figures


def snapshot_build(env: dict, log: Path, day: date, label: str) -> dict:
    return run_dbt(env, ["build", "--select", "city_forecast_snapshots", "--vars",
                         json.dumps({"snapshot_date": day.isoformat()})], log, label)


# --------------------------------------------------------------------------------------
# One size
# --------------------------------------------------------------------------------------

def measure_size(name: str, bulk_csv: Path, entries_dir: Path, folder: Path,
                 options: argparse.Namespace) -> dict:
    from refresh_assets.lib.runtime import embedded_server, ensure_database, runtime_environment
    from refresh_assets.settings import load_settings

    home = folder / name.replace(",", "").replace(" ", "-")
    env = {**os.environ, "REFRESH_HOME": str(home / "home"), "REFRESH_PG_PORT": str(free_port())}
    for variable in ("REFRESH_DATABASE_URL", "REFRESH_REPORTS_DIR", "REFRESH_ENTRIES_DIR"):
        env.pop(variable, None)
    settings = load_settings(env)
    out: dict = {"name": name, "history": {}, "builds": []}
    mark = time.perf_counter()
    ready = ensure_database(settings)
    say(f"\n[{name}] database: {ready.what_happened} ({time.perf_counter() - mark:.1f} s)")
    log = home / "dbt.log"
    deep = str(options.history)
    try:
        env.update(runtime_environment(settings, ready.address))
        env["DBT_LOG_PATH"] = str(home / "dbt-logs")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        address = ready.address
        deep_address = replace(address, warehouse_db=f"{address.warehouse_db}_deep")
        # One dbt target folder per database: each keeps its own partial-parse state.
        envs = {"1": {**env, "DBT_TARGET_PATH": str(home / "dbt-target")},
                deep: {**env, **deep_address.environment(),
                       "DBT_TARGET_PATH": str(home / "dbt-target-deep")}}

        conn = connect(address)
        load = load_warehouse(address, bulk_csv, entries_dir)
        kept = load.pop("kept")
        out["load"] = load
        analyze_analytics(conn)
        out["cities"] = one(conn, "select count(*) from analytics.current_projections")
        say(f"  warehouse filled in {load['seconds']:.1f} s "
            f"({', '.join(f'{k} {v:.1f}' for k, v in load['steps'].items())}): "
            f"{load['cities']:,} cities, {out['cities']:,} projected, "
            f"held back {len(load['held_back'])}")
        out["history"]["1"] = history_figures(conn)
        today = datetime.now(UTC).date()
        out["today"] = today.isoformat()

        # 1a. The whole project on an empty marts schema (today's snapshot included).
        out["build_all_cold"] = run_dbt(envs["1"], ["build"], log, "whole project, cold")

        # A copy of the warehouse, whose history then grows to --history runs per city: the
        # reads and builds below alternate between the two, so both see the same load.
        conn.close()
        mark = time.perf_counter()
        admin = connect(replace(address, warehouse_db=address.dagster_db))
        with admin.cursor() as cur:
            cur.execute(f'create database "{deep_address.warehouse_db}" template '
                        f'"{address.warehouse_db}" strategy file_copy')
        admin.close()
        out["copy_seconds"] = time.perf_counter() - mark
        conns = {"1": connect(address), deep: connect(deep_address)}
        out["history_append_seconds"] = deepen_history(deep_address, kept, options.history - 1)
        analyze_analytics(conns[deep])
        out["history"][deep] = history_figures(conns[deep])
        say(f"  copied the warehouse in {out['copy_seconds']:.1f} s; its history: "
            f"{out['history'][deep]['runs_per_city_max']} runs per city, "
            f"{out['history'][deep]['projection_years_rows']:,} projection_years rows "
            f"(appended in {sum(out['history_append_seconds']):.1f} s)")

        # 4. One-city reads.
        out["reads"] = reads(conns, options.reads, options.old_reads, options.explains)
        conns["1"].close()
        conn = conns[deep]

        # 1b. The forecast layer, alternately with 1 run and --history runs per city (the
        # copy's target folder parsed first, as the other's was by the cold build).
        out["parse_deep"] = run_dbt(envs[deep], ["parse"], log, "parse, deep copy's target")
        for i in range(options.builds):
            for depth in ("1", deep):
                build = run_dbt(envs[depth], ["build", *LAYER], log,
                                f"forecast layer, {depth} run(s) per city, #{i + 1}")
                out["builds"].append({"depth": depth, "build": build})

        # 3. The aggregates (deep history).
        out["refresh"] = refresh_aggregates(conn, options.refreshes)

        # 2. Snapshots (deep history): two new days, a re-take, then with --days-kept days.
        env = envs[deep]
        days = [today - timedelta(days=1), today - timedelta(days=2)]
        out["snapshots"] = []
        for day, what in ((days[0], "new day"), (days[1], "new day"), (days[0], "re-take")):
            build = snapshot_build(env, log, day, f"snapshot {day} ({what})")
            out["snapshots"].append({"day": day.isoformat(), "what": what, "build": build,
                                     **snapshot_figures(conn, day)})
        out["fill"] = fill_snapshot_days(conn, days[0], options.days_kept)
        retake = snapshot_build(env, log, days[0],
                                f"snapshot {days[0]} (re-take, {options.days_kept} days kept)")
        out["snapshot_kept"] = {"day": days[0].isoformat(), "build": retake,
                                **snapshot_figures(conn, days[0])}
        out["snapshot_delete_plan"] = snapshot_delete_plan(conn, days[0])
        out["backtest_kept"] = run_dbt(env, ["build", "--select", "forecast_backtest"], log,
                                       f"forecast_backtest, {options.days_kept} days kept")
        conn.close()
    finally:
        embedded_server(settings).stop()
        if not options.keep:
            shutil.rmtree(home / "home", ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def slowest(build: dict, n: int = 5) -> str:
    nodes = sorted(build["nodes"].items(), key=lambda kv: -kv[1]["seconds"])[:n]
    return ", ".join(f"{k.split('.')[2]} {v['seconds']:.2f}" for k, v in nodes)


def layer_builds(size: dict, depth: str) -> list[dict]:
    return [b["build"] for b in size["builds"] if b["depth"] == depth]


def report(figures: dict) -> None:
    meta = figures["meta"]
    print(f"\ndate: {meta['date']}; code: {meta['code']}; machine: {meta['machine']}")
    print(f"load average (1, 5, 15 min) at start {meta['load_start']}, "
          f"at end {meta.get('load_end')}; {meta.get('total_seconds', 0):.0f} s in all")
    print(f"options: {meta['options']}")
    sizes = figures["sizes"]
    for size in sizes:
        depths = list(size["history"])
        shallow, deep = depths[0], depths[-1]
        print(f"\n=== {size['name']}: {size['cities']:,} cities projected "
              f"(warehouse filled in {size['load']['seconds']:.1f} s)")
        for h in size["history"].values():
            print(f"  history {h['runs_per_city_max']} run(s) per city: "
                  f"{h['projection_years_rows']:,} projection_years rows "
                  f"({h['projection_years_bytes'] / 2**20:.1f} MiB), "
                  f"{h['projection_summaries_rows']:,} summaries")
        print("  dbt build (wall s, dbt's own elapsed s; slowest nodes):")
        for b in [size["build_all_cold"], *(b["build"] for b in size["builds"]),
                  size["backtest_kept"]]:
            print(f"    {b['label']:42s} {b['wall']:6.1f} ({b.get('dbt_elapsed') or 0:5.1f}); "
                  f"{slowest(b, 3)}" + (f"; NOT OK {b['not_ok']}" if b["not_ok"] else ""))
        for depth in (shallow, deep):
            builds = layer_builds(size, depth)
            print(f"    forecast layer, {depth} run(s)/city: median wall "
                  f"{median([b['wall'] for b in builds]):.1f} s, dbt elapsed "
                  f"{median([b.get('dbt_elapsed') or 0 for b in builds]):.1f} s")
        print("  snapshots (deep history):")
        for s in [*size["snapshots"], size["snapshot_kept"]]:
            model = next((v["seconds"] for k, v in s["build"]["nodes"].items()
                          if k.startswith("model.")), float("nan"))
            tests = max((v["seconds"] for k, v in s["build"]["nodes"].items()
                         if k.startswith("test.")), default=0)
            print(f"    {s['build']['label']:42s} {s['build']['wall']:5.1f} s wall, dbt "
                  f"{s['build'].get('dbt_elapsed') or 0:.1f} s (model {model:.2f} s, slowest "
                  f"test {tests:.2f} s); day {s['day_rows']:,} rows, "
                  f"{s['day_tuple_bytes'] / 2**20:.1f} MiB of tuples; table {s['days']} days, "
                  f"{s['table_rows']:,} rows, {s['table_bytes'] / 2**20:.1f} MiB "
                  f"(heap {s['table_heap_bytes'] / 2**20:.1f})")
        print("  materialized views, deep history (median s: concurrently / plain):")
        for view, r in size["refresh"].items():
            print(f"    {view:34s} {median(r['concurrently']):7.3f} / {median(r['plain']):7.3f}"
                  f"  ({r['rows']:,} rows)")
        print("  one-city read, median ms (client: execute + fetch; EXPLAIN ANALYZE: "
              "planning + execution):")
        for name in READS:
            cells = []
            for depth in (shallow, deep):
                r = size["reads"][depth][name]
                cells.append(f"{depth} run(s) {1000 * r['median']:8.2f} "
                             f"({r['planning_ms']:.2f} + {r['execution_ms']:.2f})")
            growth = size["reads"][deep][name]["median"] / size["reads"][shallow][name]["median"]
            print(f"    {name:10s} " + "   ".join(cells) + f"   deep/shallow {growth:.2f}")
        for depth in (shallow, deep):
            r = size["reads"][depth]
            print(f"    old / new at {depth} run(s) per city: "
                  f"{r['old']['median'] / r['new']['median']:.0f}x")
    if len(sizes) == 2:
        small, large = sizes
        deep = list(large["history"])[-1]
        print(f"\n=== {large['name']} / {small['name']} (same run of the script)")
        cold = large["build_all_cold"]["wall"] / small["build_all_cold"]["wall"]
        print(f"  whole project, cold: {cold:.2f}x")
        for depth in (list(large["history"])[0], deep):
            a = median([b["wall"] for b in layer_builds(small, depth)])
            b = median([b["wall"] for b in layer_builds(large, depth)])
            print(f"  forecast layer, {depth} run(s)/city: {b / a:.2f}x")
        for name in READS:
            print(f"  read {name}, {deep} runs/city: "
                  f"{large['reads'][deep][name]['median'] / small['reads'][deep][name]['median']:.2f}x")
        print(f"\nplan of the new read, {large['name']}, {deep} runs per city:")
        print(large["reads"][deep]["new"]["plan"])
        print(f"\nplan of the old read, {large['name']}, {deep} runs per city:")
        print(large["reads"][deep]["old"]["plan"])
        print(f"\nplan of the all-cities read, {large['name']}, {deep} runs per city:")
        print(large["reads"][deep]["all_cities"]["plan"])
        print(f"\nplan of the snapshot's delete, {large['name']}, with "
              f"{large['snapshot_kept']['days']} days kept:")
        print(large["snapshot_delete_plan"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=4770,
                        help="synthetic cities of the large size (default 4770 = 10 x 477)")
    parser.add_argument("--skip-synthetic", action="store_true", help="only the 477 real cities")
    parser.add_argument("--history", type=int, default=5,
                        help="projection runs per city for the deep-history figures (default 5)")
    parser.add_argument("--reads", type=int, default=200,
                        help="runs of each new-style one-city read (default 200)")
    parser.add_argument("--old-reads", type=int, default=20,
                        help="runs of the old-style (ranked history) read (default 20)")
    parser.add_argument("--refreshes", type=int, default=3,
                        help="refreshes of each aggregate, each way (default 3)")
    parser.add_argument("--days-kept", type=int, default=30,
                        help="snapshot days in the table for the last snapshot (default 30)")
    parser.add_argument("--explains", type=int, default=20,
                        help="EXPLAIN ANALYZE runs of each new-style read (old: a fifth; "
                             "default 20)")
    parser.add_argument("--builds", type=int, default=2,
                        help="forecast-layer builds per history depth, alternating (default 2)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the clusters afterwards")
    parser.add_argument("--from-json", type=Path, metavar="JSON",
                        help="print the figures of an earlier --json file; measure nothing")
    args = parser.parse_args()
    if args.from_json:
        report(json.loads(args.from_json.read_text()))
        return

    import refresh_assets
    assert Path(refresh_assets.__file__).resolve().is_relative_to(REPO), refresh_assets.__file__
    from refresh_assets.settings import DATA_DIR, PROJECT_DIR

    options = {k: v for k, v in vars(args).items() if k not in ("json", "from_json")}
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "code": git_state(REPO),
            "machine": f"{os.cpu_count()} cores, python {sys.version.split()[0]}",
            "load_start": [round(x, 2) for x in os.getloadavg()],
            "options": {k: str(v) for k, v in options.items()}}
    say(f"{meta['date']}, {meta['code']}, load {meta['load_start']}")
    folder = WORK / f"bench-forecast-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder.mkdir(parents=True)
    figures: dict = {"meta": meta, "sizes": []}
    started = time.perf_counter()

    figures["sizes"].append(measure_size("477 real", DATA_DIR / "ca_city_fiscal_inputs.csv",
                                         PROJECT_DIR / "entries", folder, args))
    if not args.skip_synthetic:
        csv = folder / f"synthetic-{args.cities}" / "ca_city_fiscal_inputs.csv"
        made = subprocess.run([sys.executable, str(REPO / "benchmarks/make_synthetic_cities.py"),
                               "--cities", str(args.cities), "--output", str(csv)],
                              capture_output=True, text=True, check=True)
        say(made.stdout.strip())
        empty_entries = folder / "empty-entries"
        empty_entries.mkdir()
        figures["sizes"].append(measure_size(f"{args.cities:,} synthetic", csv, empty_entries,
                                             folder, args))
    meta["load_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["total_seconds"] = time.perf_counter() - started
    say(f"\ntotal {meta['total_seconds']:.0f} s; dbt output in {folder}/*/dbt.log")
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
