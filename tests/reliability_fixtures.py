"""What the reliability tests share: the Dagster instance and the warehouse of an environment
made by `own_instance` (tests/ui_fixtures.py), read from the test process as the CLI and
the daemon see them, and the Dagster daemon run on its own, to be killed and started again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from refresh_assets.lib.runtime import runtime_environment, server_address
from refresh_assets.settings import PROJECT_DIR, load_settings
from tests.conftest import VENV_BIN


@contextmanager
def instance_of(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance of `env` (DAGSTER_HOME and the REFRESH_DB_* variables it reads
    are set for as long as the block runs)."""
    settings = load_settings(env)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in runtime_environment(settings, server_address(settings)).items():
            patch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            yield instance


def warehouse_url(env: dict[str, str]) -> str:
    """The libpq URL of the warehouse of `env`'s embedded server."""
    return server_address(load_settings(env)).libpq_url()


def rows(url: str, query: str, *params) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def wait_until(what: str, probe: Callable[[], object], timeout: float,
               seen: Callable[[], object] = lambda: None, interval: float = 0.5):
    """Polls `probe` until it returns something true, and returns it; fails naming what was
    awaited and what was seen instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"no {what} within {timeout:.0f} s; seen: {seen()!r}")


def daemon_environment(env: dict[str, str], **extra: str) -> dict[str, str]:
    """`env` with what the CLI exports for Dagster (the instance, the database), then `extra`."""
    settings = load_settings(env)
    return {**env, **runtime_environment(settings, server_address(settings)), **extra}


class Daemon:
    """`dagster-daemon run` over the project's workspace, as a service manager runs it (the
    sensors, schedules, run queue and monitoring of `refresh-assets ui` without the webserver),
    in a process group of its own with the code server it starts and the runs it launches."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        with log.open("a") as output:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=PROJECT_DIR,
                env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL to the daemon alone, as a crash or the OOM killer ends it: no clean shutdown.
        Its code server stays until its runs end (then misses the daemon's heartbeat and stops)."""
        self.process.kill()
        self.process.wait()

    def stop_all(self) -> None:
        """SIGKILL to whatever is left of its process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n--- tail of the daemon log ---\n" + "\n".join(text.splitlines()[-lines:])


@contextmanager
def running_daemon(env: dict[str, str], log: Path) -> Iterator[Daemon]:
    daemon = Daemon(env, log)
    try:
        yield daemon
    finally:
        daemon.stop_all()


def sensor_state(instance: dg.DagsterInstance, name: str):
    """The instance's record of the sensor `name` (its cursor, the ids of its ticks), or None
    before its first tick."""
    return next((state for state in instance.all_instigator_state()
                 if state.instigator_name == name), None)


UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
              dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
              dg.DagsterRunStatus.CANCELING]


def cancel_orphaned_runs(env: dict[str, str]) -> list[str]:
    """Once a test's UI or daemon is stopped with what it started: the runs it left unfinished
    (their processes went with it) canceled and their pool slots freed, as the daemon's run
    monitoring would fail them 15 minutes later. Left alone, a run that held the slot of the
    pool warehouse_dbt stalls every later dbt build on the instance, and so every later test
    that shares the session's instance. Canceled, not failed: a later test's failure sensor
    must not take them for refreshes that failed. Returns the runs canceled."""
    canceled = []
    with instance_of(env) as instance:
        for record in instance.get_run_records(dg.RunsFilter(statuses=UNFINISHED)):
            instance.report_run_canceled(record.dagster_run,
                                         message="its UI or daemon was stopped by the test")
            instance.event_log_storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
            canceled.append(record.dagster_run.run_id)
    return canceled


def unfinished_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs queued, starting, running or being canceled, as '<job> <run id> <status>'."""
    return [f"{r.dagster_run.job_name} {r.dagster_run.run_id} {r.dagster_run.status.value}"
            for r in instance.get_run_records(dg.RunsFilter(statuses=UNFINISHED))]
