"""Test fixtures: a real PostgreSQL server started by the test run itself.

The server is the project's own embedded cluster, started through the same code path
as `refresh-assets db start`, in a throwaway folder on a free port, and stopped at
the end of the session. No database needs to be running beforehand.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from refresh_assets.lib.database import ServerAddress
from refresh_assets.lib.runtime import embedded_server, ensure_database, runtime_environment
from refresh_assets.settings import DBT_PROJECT_DIR, Settings, load_settings

VENV_BIN = Path(sys.executable).parent
NO_SOURCES = """\
checks: {user_agent: "refresh-assets tests"}
cadence:
  acfr: {months: [1, 4, 7, 10], day: 15}
  calpers_valuation: {months: [7], day: 1}
hosts: {127.0.0.1: }
cities: {}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs `refresh-assets ARGS` as a user would, in a subprocess."""
    result = subprocess.run(
        [str(VENV_BIN / "refresh-assets"), *args],
        env=env if env is not None else os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"refresh-assets {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def test_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a throwaway embedded cluster; the variables stay set for the session."""
    home = tmp_path_factory.mktemp("refresh_home")
    # Tests reach no network beyond 127.0.0.1: the project's registry (real city pages) is
    # replaced by one without sources; a test that checks sources writes its own.
    no_sources = home / "sources.yaml"
    no_sources.write_text(NO_SOURCES)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("REFRESH_DATABASE_URL", raising=False)
        patch.setenv("REFRESH_HOME", str(home))
        patch.setenv("REFRESH_PG_PORT", str(free_port()))
        patch.setenv("REFRESH_SOURCES_FILE", str(no_sources))
        yield load_settings()


@pytest.fixture(scope="session")
def warehouse(test_settings: Settings) -> Iterator[ServerAddress]:
    """The test server, started and bootstrapped; Dagster and dbt variables exported."""
    ready = ensure_database(test_settings)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in runtime_environment(test_settings, ready.address).items():
            patch.setenv(name, value)
        try:
            yield ready.address
        finally:
            embedded_server(test_settings).stop()


@pytest.fixture(scope="session")
def dbt_manifest(warehouse: ServerAddress) -> Path:
    """The manifest Dagster loads, prepared the way the CLI prepares it."""
    run_cli("dbt", "prepare")
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    assert manifest.exists()
    return manifest
