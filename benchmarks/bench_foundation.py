"""Measures the foundation on the embedded stack; results go in benchmarks/RESULTS.md.

For each run, in a fresh clone of this repository's HEAD (new venv, new cluster):
  - cold `make demo`, split into install / database start / dbt prepare / materialize
    (the last three as `refresh-assets demo` reports its own steps);
  - seconds until the UI (`refresh-assets ui`) answers /server_info, and until its
    GraphQL API lists the assets (the code location has loaded);
  - in-process materialization of the main job (definitions load, then execute), repeated.
Prints each run's figures and the medians. Usage:

    python benchmarks/bench_foundation.py [--runs 3] [--inprocess-repeats 3]

Note: pip's download cache is kept between runs (a first-ever install also downloads).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import free_port  # noqa: E402

WORK = REPO / "benchmarks" / ".work"

INPROCESS = """
import json, sys, time
t0 = time.perf_counter()
from dagster import DagsterInstance
from refresh_assets.definitions import defs
job = defs.resolve_job_def("refresh_all")
instance = DagsterInstance.get()
cities = instance.get_dynamic_partitions("cities")
every_city = {"dagster/asset_partition_range_start": cities[0],
              "dagster/asset_partition_range_end": cities[-1]}
loaded = time.perf_counter() - t0
runs = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter()
    assert job.execute_in_process(instance=instance, tags=every_city).success
    runs.append(time.perf_counter() - t)
print(json.dumps({"load": loaded, "runs": runs}))
"""



def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


def stop_process_group(process: subprocess.Popen) -> None:
    """Ctrl-C for `dagster dev` (it shuts its children down on SIGINT), then force."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def ui_start_times(clone: Path, env: dict[str, str]) -> tuple[float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(clone / ".venv/bin/refresh-assets"), "ui", "--port", str(port)],
        cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    answered = listed = None
    try:
        while time.perf_counter() - started < 300:
            try:
                if answered is None and requests.get(f"{url}/server_info", timeout=2).ok:
                    answered = time.perf_counter() - started
                if answered is not None:
                    nodes = requests.post(
                        f"{url}/graphql", json={"query": "{ assetNodes { id } }"}, timeout=10
                    ).json()["data"]["assetNodes"]
                    if nodes:
                        listed = time.perf_counter() - started
                        break
            except requests.RequestException:
                pass
            time.sleep(0.25)
    finally:
        stop_process_group(process)
    if listed is None:
        sys.exit("the UI did not list the assets within 300 s")
    return answered, listed


def one_run(index: int, inprocess_repeats: int) -> dict[str, float]:
    clone = WORK / f"clone-{index}"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {**os.environ, "REFRESH_PG_PORT": str(free_port())}
    env.pop("REFRESH_DATABASE_URL", None)
    env.pop("REFRESH_HOME", None)
    figures: dict[str, float] = {}
    try:
        figures["install"], _ = timed(["make", "install"], clone, env)
        figures["demo_total"], output = timed([str(clone / ".venv/bin/refresh-assets"), "demo"],
                                              clone, env)
        steps = [float(s) for s in re.findall(r"done in ([\d.]+) s", output)]
        figures["database_start"], figures["dbt_prepare"], figures["materialize"] = steps[:3]
        figures["ui_answers"], figures["ui_lists_assets"] = ui_start_times(clone, env)
        exported = subprocess.run(
            [str(clone / ".venv/bin/python"), "-c",
             "from refresh_assets.settings import load_settings\n"
             "from refresh_assets.lib.runtime import server_address, runtime_environment\n"
             "import json; s = load_settings()\n"
             "print(json.dumps(runtime_environment(s, server_address(s))))"],
            cwd=clone, env=env, capture_output=True, text=True, check=True,
        ).stdout
        _, inprocess = timed([str(clone / ".venv/bin/python"), "-c", INPROCESS,
                              str(inprocess_repeats)], clone, {**env, **json.loads(exported)})
        measured = json.loads(inprocess.strip().splitlines()[-1])
        figures["inprocess_load_definitions"] = measured["load"]
        figures["inprocess_materialize"] = statistics.median(measured["runs"])
    finally:
        subprocess.run(["make", "stop"], cwd=clone, env=env, capture_output=True, check=False)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--inprocess-repeats", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, {sys.platform}, python {sys.version.split()[0]}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    runs = []
    for index in range(args.runs):
        figures = one_run(index, args.inprocess_repeats)
        runs.append(figures)
        print(f"run {index + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in figures.items()),
              flush=True)
    print("\nmedian of", len(runs), "runs (seconds):")
    for key in runs[0]:
        print(f"  {key:28s} {statistics.median(r[key] for r in runs):7.2f}")
    cold = statistics.median(
        r["install"] + r["database_start"] + r["dbt_prepare"] + r["materialize"] for r in runs
    )
    print(f"  {'cold make demo (sum)':28s} {cold:7.2f}")


if __name__ == "__main__":
    main()
