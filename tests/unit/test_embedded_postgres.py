import os
import socket
from pathlib import Path

import pytest

from refresh_assets.lib.embedded_postgres import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    _process_is_postgres,
    find_server_binaries,
    port_is_free,
)


def test_the_wheel_ships_server_binaries():
    folder = find_server_binaries()
    for program in ("initdb", "pg_ctl", "postgres", "psql"):
        assert (folder / program).exists()


def test_an_explicit_folder_without_binaries_is_an_error(tmp_path):
    with pytest.raises(EmbeddedPostgresError, match="REFRESH_PG_BIN"):
        find_server_binaries(tmp_path)


def test_a_listening_port_is_not_free():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
    assert port_is_free(port)


def test_a_pid_that_is_not_postgres_is_not_taken_for_the_server():
    assert not _process_is_postgres(os.getpid())
    assert not _process_is_postgres(2**22 + 1)  # beyond pid_max: no such process


def test_a_stale_pid_file_is_reported(tmp_path: Path):
    server = EmbeddedPostgres(tmp_path, 5999)
    server.data_dir.mkdir()
    (server.data_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{server.data_dir}\n0\n5999\n")
    status = server.status()
    assert not status.running
    assert status.stale_pid_file


def test_address_before_initialisation_says_what_to_run(tmp_path):
    with pytest.raises(EmbeddedPostgresError, match="refresh-assets db start"):
        EmbeddedPostgres(tmp_path, 5999).address()
