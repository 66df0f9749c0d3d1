"""What the reliability tests share: the Dagster instance and the warehouse of an environment
made by `own_instance` (tests/ui_fixtures.py), read from the test process as the CLI and
the daemon see them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg2
import pytest

from refresh_assets.lib.runtime import runtime_environment, server_address
from refresh_assets.settings import load_settings


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
