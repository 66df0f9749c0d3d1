"""The Dagster UI in the e2e tests, started as operators and viewers start it (`refresh-assets ui`,
`refresh-assets ui --viewer`), its GraphQL API, and what the browser tests share.

Reuse it with `from tests.ui_fixtures import running_ui, graphql, ...` in a test module and
module-scoped fixtures of its own: starting a UI takes minutes on a busy machine, so a module
starts each UI it needs once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.browser import artifacts_dir
from tests.conftest import NO_SOURCES, VENV_BIN, free_port, run_cli
from tests.reliability_fixtures import cancel_orphaned_runs

# The webserver's name for the one repository of the code location (workspace.yaml).
REPOSITORY = {"repositoryLocationName": "refresh_assets", "repositoryName": "__repository__"}
# Database, dbt manifest, webserver and code location: minutes on a busy 2-core machine.
STARTUP_SECONDS = 300
# Playwright's own default (5 s) is shorter than a page of this UI takes to load under load.
PAGE_TIMEOUT_MS = 60_000

LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
ADD_PARTITION = """
mutation($repository: RepositorySelector!, $partitions: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repository, partitionsDefName: $partitions,
                      partitionKey: $key) {
    __typename ... on Error { message } } }
"""


def graphql(url: str, query: str, **variables) -> dict:
    """The data of a GraphQL request to the webserver at `url`; the test fails on errors."""
    answer = requests.post(f"{url}/graphql", json={"query": query, "variables": variables},
                           timeout=60).json()
    if answer.get("errors"):
        pytest.fail(f"GraphQL errors from {url}: {answer['errors']}")
    return answer["data"]


def add_city_partition(url: str, city: str) -> None:
    """Adds a city partition, as the entries sensor does when a city's files first arrive."""
    added = graphql(url, ADD_PARTITION, repository=REPOSITORY, partitions="cities",
                    key=city)["addDynamicPartition"]
    assert added["__typename"] == "AddDynamicPartitionSuccess", added


@contextmanager
def own_instance(home: Path) -> Iterator[dict[str, str]]:
    """The environment of a Dagster instance and a warehouse of their own, on an embedded
    server in `home` that `refresh-assets ui` starts as on a new machine; stopped at the end.
    No city has entry files (the entries sensor starts no run) and no source is checked."""
    (home / "entries").mkdir()
    (home / "sources.yaml").write_text(NO_SOURCES)
    env = {**os.environ, "REFRESH_HOME": str(home), "REFRESH_PG_PORT": str(free_port()),
           "REFRESH_ENTRIES_DIR": str(home / "entries"),
           "REFRESH_REPORTS_DIR": str(home / "reports"),
           "REFRESH_SOURCES_FILE": str(home / "sources.yaml")}
    env.pop("REFRESH_DATABASE_URL", None)
    try:
        yield env
    finally:
        run_cli("db", "stop", env=env, check=False)


@contextmanager
def running_ui(log: Path, *options: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`refresh-assets ui OPTIONS` on a free port, with `env` (default: this process's); yields
    its URL once the code location has loaded, and stops it with what it started."""
    port = free_port()
    with log.open("w") as output:
        # Its own process group, stopped by pid: `dagster dev` ignores signals sent any other way.
        process = subprocess.Popen(
            [str(VENV_BIN / "refresh-assets"), "ui", "--port", str(port), *options],
            env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_loaded(url, process, log)
            yield url
        finally:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: dagster dev stops its children
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            # A code server can outlive dagster dev, ignoring SIGINT and SIGTERM (seen here,
            # orphaned for an hour): whatever is left of the group goes.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            cancel_orphaned_runs(env if env is not None else dict(os.environ))


def _wait_until_loaded(url: str, process: subprocess.Popen, log: Path) -> None:
    # The webserver answers before the code location has loaded; a load error is final.
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"refresh-assets ui exited {process.returncode}:\n{log.read_text()}")
        try:
            entries = graphql(url, LOCATIONS)["workspaceOrError"]["locationEntries"]
        except requests.RequestException:  # not listening yet, or not answering JSON yet
            entries = []
        loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
        if loaded:
            [entry] = loaded
            location = entry["locationOrLoadError"]
            if location["__typename"] == "PythonError":
                pytest.fail(f"the code location failed to load:\n{location['message']}")
            return
        time.sleep(1)
    pytest.fail(f"the UI did not load within {STARTUP_SECONDS} s:\n{log.read_text()}")


@contextmanager
def ui_page(browser, width: int = 1400, height: int = 1000) -> Iterator:
    """A page of its own browser context (a first visit), closed at the end."""
    from playwright.sync_api import expect

    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def screenshot(page, name: str, full_page: bool = False) -> Path:
    """Saves what the page shows as artifacts_dir("ui")/NAME.png."""
    path = artifacts_dir("ui") / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    return path
