"""`refresh-assets db ...` on a cluster of its own, as a user runs it."""

import os
import signal
import socket
import time

import psycopg2
import pytest

from tests.conftest import free_port, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def own_cluster_env(tmp_path):
    env = os.environ.copy()
    env.pop("REFRESH_DATABASE_URL", None)
    env["REFRESH_HOME"] = str(tmp_path / "home")
    env["REFRESH_PG_PORT"] = str(free_port())
    yield env
    run_cli("db", "stop", env=env, check=False)


def postmaster_pid(env) -> int:
    pid_file = os.path.join(env["REFRESH_HOME"], "postgres", "data", "postmaster.pid")
    with open(pid_file) as handle:
        return int(handle.readline())


def test_start_is_idempotent_and_the_url_connects(own_cluster_env):
    env = own_cluster_env
    first = run_cli("db", "start", env=env)
    assert "initialised a new cluster" in first.stdout
    assert "created database(s) dagster, warehouse" in first.stdout

    second = run_cli("db", "start", env=env)
    assert "already running" in second.stdout and "nothing to do" in second.stdout

    status = run_cli("db", "status", env=env)
    assert f"127.0.0.1:{env['REFRESH_PG_PORT']}" in status.stdout

    url = run_cli("db", "url", env=env).stdout.strip()
    assert url.startswith("postgresql://refresh:") and url.endswith(
        f"@127.0.0.1:{env['REFRESH_PG_PORT']}/warehouse")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select schema_name from information_schema.schemata")
        schemas = {row[0] for row in cur.fetchall()}
    assert {"raw", "analytics", "staging", "intermediate", "marts", "ops"} <= schemas

    assert "stopped" in run_cli("db", "stop", env=env).stdout
    assert run_cli("db", "status", env=env, check=False).returncode == 1
    assert "nothing to do" in run_cli("db", "stop", env=env).stdout

    stopped = run_cli("project", "--city", "vallejo", env=env, check=False)
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr
    assert stopped.stderr.strip() == (
        "Error: the database is not running: start it with `refresh-assets db start` (or `make demo`)")


def test_an_unclean_shutdown_recovers(own_cluster_env):
    env = own_cluster_env
    run_cli("db", "start", env=env)
    os.kill(postmaster_pid(env), signal.SIGKILL)
    time.sleep(0.5)
    status = run_cli("db", "status", env=env, check=False)
    assert status.returncode == 1 and "stale pid file" in status.stdout

    restarted = run_cli("db", "start", env=env)
    assert "removed a stale postmaster.pid" in restarted.stdout
    with psycopg2.connect(run_cli("db", "url", env=env).stdout.strip()) as conn:
        assert conn.server_version >= 150000


def test_a_taken_port_is_named_with_the_variable_to_change(own_cluster_env):
    env = own_cluster_env
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        env["REFRESH_PG_PORT"] = str(squatter.getsockname()[1])
        result = run_cli("db", "start", env=env, check=False)
    assert result.returncode == 1
    assert f"port {env['REFRESH_PG_PORT']} on 127.0.0.1 is already in use" in result.stderr
    assert "REFRESH_PG_PORT" in result.stderr


def test_an_external_server_is_used_and_never_started(warehouse, tmp_path):
    env = os.environ.copy()
    env["REFRESH_HOME"] = str(tmp_path / "unused_home")
    env["REFRESH_DATABASE_URL"] = warehouse.libpq_url()
    result = run_cli("db", "start", env=env)
    assert "nothing started" in result.stdout
    assert warehouse.password not in result.stdout
    assert not (tmp_path / "unused_home" / "postgres").exists()
    assert run_cli("db", "url", env=env).stdout.strip() == warehouse.libpq_url()
