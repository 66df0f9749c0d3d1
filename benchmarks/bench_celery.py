"""A full refresh on one Celery worker vs two (issue 13), with the in-process refresh beside
them for reference. Results go in benchmarks/RESULTS.md.

Usage: python benchmarks/bench_celery.py [--cities N] [--home DIR]

Each configuration refreshes every city (or the first N) on an empty warehouse of its own (an
embedded server in a home of its own, the project's entry files copied), as `refresh-assets
materialize` runs the main job: `dagster job execute` over the range of cities, its steps in
the run's process or sent through a redis-server of the benchmark's own to `refresh-assets
celery worker` processes started beforehand (their start is not timed). The wall time is the
job process's; the steps' times and workers come from the run's Dagster record.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.common import git_state  # noqa: E402
from refresh_assets.defs.executors import DEFAULT_VISIBILITY_TIMEOUT  # noqa: E402
from refresh_assets.lib.cities import known_cities  # noqa: E402
from tests.celery_fixtures import (  # noqa: E402
    CELERY_PROFILE,
    celery_environment,
    in_process_environment,
    prepare_home,
    redis_server,
    run_of,
    running_workers,
    start_main_job,
    step_starts,
    step_windows,
)
from tests.reliability_fixtures import instance_of  # noqa: E402
from tests.ui_fixtures import own_instance  # noqa: E402

RUN_SECONDS = 3600


@dataclass
class Measured:
    label: str
    wall: float  # the job process, start to exit
    run: float  # the run's record, start to end
    status: str
    steps: dict[str, tuple[float, str]]  # step -> (seconds, where it ran)


def measure(label: str, env: dict[str, str], run_env: dict[str, str], cities: list[str],
            log: Path, workers: dict[int, str], dagster_home: Path | None = None) -> Measured:
    started = time.perf_counter()
    process, invocation = start_main_job(run_env, cities, log, dagster_home)
    process.wait(timeout=RUN_SECONDS)
    wall = time.perf_counter() - started
    with instance_of(env) as instance:
        run = run_of(instance, invocation)
        record = instance.get_run_record_by_id(run.run_id)
        where = {start.step: workers.get(start.pid, "run process") for start in
                 step_starts(instance, run.run_id)}
        steps = {step: (end - begin, where[step]) for step, (begin, end) in
                 step_windows(instance, run.run_id).items()}
    return Measured(label, wall, record.end_time - record.start_time, run.status.value, steps)


def print_steps(results: list[Measured]) -> None:
    steps = sorted({step for r in results for step in r.steps},
                   key=lambda s: min(r.steps.get(s, (0, ""))[0] for r in results))
    print("\nSteps, seconds (where they ran):")
    print(f"| step | {' | '.join(r.label for r in results)} |")
    print(f"|---|{'---|' * len(results)}")
    for step in steps:
        cells = [f"{r.steps[step][0]:.1f} ({r.steps[step][1]})" if step in r.steps else "-"
                 for r in results]
        print(f"| {step} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=len(known_cities()),
                        help="refresh the first N cities in name order (default: every city)")
    parser.add_argument("--home", type=Path, help="keep the homes, logs included, here")
    args = parser.parse_args()
    cities = sorted(known_cities())[:args.cities]
    base = args.home or Path(tempfile.mkdtemp(prefix="bench_celery_"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"bench_celery: {len(cities)} cities, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the start, "
          f"commit {git_state(PROJECT)}; homes under {base}")

    results = []
    home = base / "in_process"
    home.mkdir()
    with own_instance(home) as env:
        prepare_home(env, cities)
        results.append(measure("in process", env, in_process_environment(env), cities,
                               base / "in_process.log", {}))
    with redis_server(base / "redis") as broker:
        for names in (["first"], ["first", "second"]):
            label = f"{len(names)} worker{'s' * (len(names) > 1)}"
            home = base / label.replace(" ", "_")
            home.mkdir()
            with own_instance(home) as env:
                prepare_home(env, cities, dbt=False)
                celery_env = celery_environment(env, broker, DEFAULT_VISIBILITY_TIMEOUT)
                with running_workers(celery_env, names, home) as workers:
                    results.append(measure(label, env, celery_env, cities, home / "run.log",
                                           {w.pid: w.name for w in workers}, CELERY_PROFILE))

    print("\n| configuration | wall (s) | run (s) | status |\n|---|---|---|---|")
    for r in results:
        print(f"| {r.label} | {r.wall:.1f} | {r.run:.1f} | {r.status} |")
    print_steps(results)
    one, two = results[1], results[2]
    print(f"\nSummary: one worker {one.wall:.1f} s, two workers {two.wall:.1f} s: ratio "
          f"{one.wall / two.wall:.2f} (in process {results[0].wall:.1f} s); "
          f"steps per worker with two: "
          + ", ".join(f"{name} {sum(w == name for _, w in two.steps.values())}"
                      for name in ("first", "second"))
          + f"; load {os.getloadavg()[0]:.2f} at the end")
    if any(r.status != "SUCCESS" for r in results):
        raise SystemExit("a run did not succeed: see the logs under " + str(base))


if __name__ == "__main__":
    main()
