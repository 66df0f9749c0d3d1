"""The Celery profile in tests and benchmarks/bench_celery.py: a redis-server of its own on a
free 127.0.0.1 port, `refresh-assets celery worker` processes (each in a process group of its
own, so that a test can kill one with everything it started), and the main job over a range
of cities run as `refresh-assets materialize` runs it, with the instance of deploy/celery."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import pytest
import redis

from refresh_assets.cli.progress import INVOCATION_TAG, MAIN_JOB
from refresh_assets.defs.executors import (
    CELERY,
    CELERY_BROKER_VARIABLE,
    CELERY_VISIBILITY_VARIABLE,
    IN_PROCESS,
    STEP_EXECUTOR_VARIABLE,
)
from refresh_assets.lib.cities import CITY_PARTITIONS
from refresh_assets.lib.run_tags import TRIGGER
from refresh_assets.settings import PROJECT_DIR
from tests.conftest import VENV_BIN, free_port, run_cli
from tests.reliability_fixtures import daemon_environment, instance_of

CELERY_PROFILE = PROJECT_DIR / "deploy" / "celery"
START_SECONDS = 120  # a worker loads the definitions before it says it is ready: slow under load
STOP_SECONDS = 30


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """Debian's redis-server on a free port, nothing persisted; yields its URL (database 0)."""
    program = shutil.which("redis-server")
    if program is None:
        pytest.fail("redis-server is not installed: `make test-deps` (Debian: apt-get install "
                    "redis-server)")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--logfile", str(folder / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start: {(folder / 'redis.log').read_text()}")
            time.sleep(0.1)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def celery_environment(env: dict[str, str], broker: str, visibility_timeout: int) -> dict[str, str]:
    """`env` as the CLI exports it, with the main job's steps sent to Celery through `broker`."""
    return daemon_environment(env, **{STEP_EXECUTOR_VARIABLE: CELERY, CELERY_BROKER_VARIABLE: broker,
                                      CELERY_VISIBILITY_VARIABLE: str(visibility_timeout)})


class Worker:
    """`refresh-assets celery worker --name NAME`, its output in `log`."""

    def __init__(self, name: str, env: dict[str, str], log: Path):
        self.name, self.log = name, log
        with log.open("a") as output:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "refresh-assets"), "celery", "worker", "--name", name], env=env,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        """The worker's process, which runs its steps (the solo pool)."""
        return self.process.pid

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while " ready." not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker {self.name} did not start:{self.log_tail()}")
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL to the worker and what it started (dbt, the report's renderers), as a lost
        machine or the OOM killer ends it: no message acknowledged, nothing cleaned up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM (a warm shutdown: the current step ends first), then SIGKILL to the group."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_SECONDS)
        self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return f"\n--- tail of {self.log} ---\n" + "\n".join(self.output().splitlines()[-lines:])


@contextmanager
def running_workers(env: dict[str, str], names: list[str], folder: Path) -> Iterator[list[Worker]]:
    """Workers started together, each ready when yielded; all stopped at the end."""
    workers: list[Worker] = []
    try:
        for name in names:
            workers.append(Worker(name, env, folder / f"worker-{name}.log"))
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def prepare_home(env: dict[str, str], cities: list[str], *, dbt: bool = True) -> None:
    """The project's entry files in `env`'s home, its database started (and the dbt manifest
    prepared, which a second home can skip), and `cities` as its city partitions, in this
    order: a run over the range from the first to the last refreshes exactly these."""
    shutil.copytree(PROJECT_DIR / "entries", Path(env["REFRESH_ENTRIES_DIR"]), dirs_exist_ok=True)
    run_cli(*(["dbt", "prepare"] if dbt else ["db", "start"]), env=env)
    with instance_of(env) as instance:
        known = set(instance.get_dynamic_partitions(CITY_PARTITIONS))
        instance.add_dynamic_partitions(CITY_PARTITIONS, [c for c in cities if c not in known])


def start_main_job(env: dict[str, str], cities: list[str], log: Path,
                   dagster_home: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`dagster job execute` of the main job over the range `cities[0]`..`cities[-1]`, as
    `refresh-assets materialize` starts it; the instance of `dagster_home` if given (else the
    repository's). Returns the process and the invocation tag that finds its run."""
    invocation = uuid.uuid4().hex
    tags = {"dagster/asset_partition_range_start": cities[0],
            "dagster/asset_partition_range_end": cities[-1],
            TRIGGER: "manual", INVOCATION_TAG: invocation}
    run_env = {**env, **({"DAGSTER_HOME": str(dagster_home)} if dagster_home else {})}
    with log.open("a") as output:
        process = subprocess.Popen(
            [str(VENV_BIN / "dagster"), "job", "execute", "-m", "refresh_assets.definitions",
             "-j", MAIN_JOB, "--tags", json.dumps(tags)],
            cwd=PROJECT_DIR, env=run_env, stdout=output, stderr=subprocess.STDOUT)
    return process, invocation


def run_of(instance: dg.DagsterInstance, invocation: str) -> dg.DagsterRun | None:
    records = instance.get_run_records(dg.RunsFilter(tags={INVOCATION_TAG: invocation}), limit=1)
    return records[0].dagster_run if records else None


def in_process_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` as the CLI exports it, the main job's steps in its run's process."""
    return daemon_environment(env, **{STEP_EXECUTOR_VARIABLE: IN_PROCESS})


class StepStart(NamedTuple):
    step: str
    pid: int  # of the process that ran the step: with the solo pool, its worker's
    at: float  # Unix time


def step_starts(instance: dg.DagsterInstance, run_id: str) -> list[StepStart]:
    """The run's step starts, in order: a step started twice is here twice."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return [StepStart(r.event_log_entry.step_key, r.event_log_entry.dagster_event.pid,
                      r.event_log_entry.timestamp) for r in records]


def step_windows(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's last start and its success, as Unix times."""
    records = instance.get_records_for_run(run_id, of_type={
        dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}).records
    starts, ends = {}, {}
    for record in records:
        entry = record.event_log_entry
        is_start = entry.dagster_event.event_type == dg.DagsterEventType.STEP_START
        (starts if is_start else ends)[entry.step_key] = entry.timestamp
    return {step: (starts[step], ends[step]) for step in ends}
