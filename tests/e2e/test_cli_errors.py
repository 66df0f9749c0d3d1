"""Each fault of the database settings or server is one line naming the setting and the fix,
with no traceback and never the password (issue 8). Real sockets and servers on 127.0.0.1;
the embedded cases use a home of their own where no server ever runs."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from refresh_assets.lib.database import ServerAddress
from refresh_assets.settings import DATA_DIR
from tests.conftest import free_port, run_cli

pytestmark = pytest.mark.e2e

SECRET = "s3cret-pw"
NOT_RUNNING = "Error: the database is not running: start it with `refresh-assets db start` (or `make demo`)"
URL_FIX = ("set it to postgresql://user:password@host:port/warehouse, "
           "or unset it to use the embedded server")
# The commands that need the database but do not start it.
READERS = [("refresh", "--city", "vallejo"), ("project", "--city", "vallejo"), ("backtest",)]


@pytest.fixture
def env(tmp_path):
    """The embedded server in a home of its own, never started."""
    environment = os.environ.copy()
    environment.pop("REFRESH_DATABASE_URL", None)
    environment["REFRESH_HOME"] = str(tmp_path / "home")
    environment["REFRESH_PG_PORT"] = str(free_port())
    return environment


def one_line_error(result, status: int = 1) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == status, output
    assert "Traceback" not in output
    assert SECRET not in output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def wait_for_listener(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture
def http_server_port():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_listener(port)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def garbage_server_port():
    """A server that answers every connection with an HTTP error line, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            with client:
                client.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    with listener:
        yield listener.getsockname()[1]


def test_an_unreachable_server_is_named_with_what_to_do(env):
    port = free_port()
    env["REFRESH_DATABASE_URL"] = f"postgresql://alice:{SECRET}@127.0.0.1:{port}/warehouse"
    line = one_line_error(run_cli("db", "start", env=env, check=False))
    assert line == (f"Error: REFRESH_DATABASE_URL=postgresql://alice:***@127.0.0.1:{port}/warehouse: "
                    f"nothing is listening on 127.0.0.1:{port} (connection refused): start that "
                    "server, or correct the host and port in REFRESH_DATABASE_URL (unset it to use "
                    "the embedded server)")


def test_a_web_server_is_not_taken_for_postgresql(env, http_server_port):
    env["REFRESH_DATABASE_URL"] = f"postgresql://alice:{SECRET}@127.0.0.1:{http_server_port}/warehouse"
    line = one_line_error(run_cli("db", "start", env=env, check=False))
    assert f"the program on 127.0.0.1:{http_server_port} does not answer as a PostgreSQL server" in line
    assert line.startswith("Error: REFRESH_DATABASE_URL=postgresql://alice:***@")
    assert line.endswith("correct the port in REFRESH_DATABASE_URL (PostgreSQL's is usually 5432)")


def test_a_server_answering_garbage_is_not_taken_for_postgresql(env, garbage_server_port):
    env["REFRESH_DATABASE_URL"] = f"postgresql://alice:{SECRET}@127.0.0.1:{garbage_server_port}/w"
    line = one_line_error(run_cli("db", "start", env=env, check=False))
    assert f"the program on 127.0.0.1:{garbage_server_port} does not answer as a PostgreSQL server" in line
    assert "REFRESH_DATABASE_URL" in line


def test_a_wrong_password_names_the_user_and_the_setting(env, warehouse):
    wrong = ServerAddress(warehouse.host, warehouse.port, warehouse.user, SECRET)
    env["REFRESH_DATABASE_URL"] = wrong.libpq_url()
    line = one_line_error(run_cli("db", "start", env=env, check=False))
    assert line == (f"Error: REFRESH_DATABASE_URL=postgresql://{warehouse.user}:***@127.0.0.1:"
                    f"{warehouse.port}/warehouse: the server on 127.0.0.1:{warehouse.port} refused "
                    f"the login of user {warehouse.user!r} (wrong password?): correct the user and "
                    "password in REFRESH_DATABASE_URL")
    assert warehouse.password not in line


def test_a_url_of_another_database_is_refused(env):
    env["REFRESH_DATABASE_URL"] = f"mysql://alice:{SECRET}@db.example/warehouse"
    line = one_line_error(run_cli("db", "start", env=env, check=False))
    assert line == ("Error: REFRESH_DATABASE_URL=mysql://alice:***@db.example/warehouse is not a "
                    f"PostgreSQL URL: {URL_FIX}")


@pytest.mark.parametrize("url", [f"postgresql://alice:{SECRET}@db.example:notaport/warehouse",
                                 f"alice:{SECRET} at db.example"])
@pytest.mark.parametrize("command", [("db", "start"), ("db", "url"), ("db", "status")])
def test_a_malformed_url_is_refused_without_showing_it(env, url, command):
    env["REFRESH_DATABASE_URL"] = url
    line = one_line_error(run_cli(*command, env=env, check=False))
    assert line == f"Error: REFRESH_DATABASE_URL is not a valid URL: {URL_FIX}"


@pytest.mark.parametrize("command", READERS)
def test_commands_that_need_the_database_say_to_start_it(env, command):
    assert one_line_error(run_cli(*command, env=env, check=False)) == NOT_RUNNING
    assert not os.path.exists(os.path.join(env["REFRESH_HOME"], "postgres", "data"))


@pytest.mark.parametrize("command", READERS)
def test_commands_that_need_the_database_name_an_unreachable_url(env, command):
    port = free_port()
    env["REFRESH_DATABASE_URL"] = f"postgresql://alice:{SECRET}@127.0.0.1:{port}/warehouse"
    line = one_line_error(run_cli(*command, env=env, check=False))
    assert line.startswith(f"Error: REFRESH_DATABASE_URL=postgresql://alice:***@127.0.0.1:{port}/")
    assert f"nothing is listening on 127.0.0.1:{port} (connection refused)" in line


def test_a_missing_warehouse_database_says_how_to_create_it(env, warehouse):
    env["REFRESH_DATABASE_URL"] = warehouse.libpq_url("no_such_database")
    line = one_line_error(run_cli("project", "--city", "vallejo", env=env, check=False))
    assert line.endswith(f"the server on 127.0.0.1:{warehouse.port} has no database "
                         "'no_such_database': `refresh-assets db start` creates the dagster and "
                         "warehouse databases")
    assert warehouse.password not in line


def test_a_warehouse_without_tables_says_to_run_the_demo(env, warehouse):
    # The server's `postgres` database is reachable but was never prepared as a warehouse.
    env["REFRESH_DATABASE_URL"] = warehouse.libpq_url("postgres")
    line = one_line_error(run_cli("backtest", env=env, check=False))
    assert line == ('Error: the warehouse has no validated figures yet (relation '
                    '"analytics.validated_fiscal_data" does not exist): run `make demo` first or '
                    "pass --input CSV")


def test_score_needs_no_database_and_names_a_bad_csv(env, tmp_path):
    missing = tmp_path / "missing.csv"
    assert one_line_error(run_cli("score", str(missing), env=env, check=False)) == (
        f"Error: {missing}: file not found")
    malformed = tmp_path / "malformed.csv"
    malformed.write_bytes(b"\x00\xff\xfe")
    assert one_line_error(run_cli("score", str(malformed), env=env, check=False)).startswith(
        f"Error: {malformed}: not a readable CSV file")
    scored = run_cli("score", str(DATA_DIR / "ca_city_fiscal_inputs.csv"), "-o",
                     str(tmp_path / "scores.csv"), env=env)
    assert "scored 1,841 rows" in scored.stderr
