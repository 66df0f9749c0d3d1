"""Operator alerts through the Dagster daemon, as production runs them: a source's breaker
opens, one email; the daemon is killed (no clean shutdown) and started again, the same
breaker is still open, and no second email comes; a new event after the restart is
alerted once. The SMTP server is real (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from refresh_assets.settings import PROJECT_DIR
from tests.conftest import VENV_BIN
from tests.integration.test_operator_alerts import open_breaker
from tests.reliability_fixtures import cancel_orphaned_runs
from tests.smtp_fixtures import Inbox, smtp_server

pytestmark = pytest.mark.e2e
# A tick of the alerts sensor is due every 60 s; the daemon loads the code location first.
WAIT_SECONDS = 300


@contextmanager
def running_daemon(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("a") as out:
        process = subprocess.Popen([str(VENV_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                                   cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)  # as a crash would: no clean shutdown
                process.wait()
            cancel_orphaned_runs(env)


def wait_for_email(inbox: Inbox, naming: str, daemon: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if any(naming in m.get_body(("plain",)).get_content() for m in inbox.messages()):
            return
        assert daemon.poll() is None, "the daemon exited:\n" + log.read_text()[-4000:]
        time.sleep(2)
    pytest.fail(f"no email naming {naming} within {WAIT_SECONDS} s; subjects: "
                f"{inbox.subjects()}\n" + log.read_text()[-4000:])


def emails_naming(inbox: Inbox, text: str) -> int:
    return sum(text in m.get_body(("plain",)).get_content() for m in inbox.messages())


def test_an_event_is_alerted_once_across_a_daemon_restart(warehouse, dbt_manifest, tmp_path):
    entries = tmp_path / "entries"
    entries.mkdir()
    log = tmp_path / "daemon.log"
    with smtp_server() as (inbox, port):
        env = {**os.environ, "REFRESH_ENTRIES_DIR": str(entries),
               "REFRESH_REPORTS_DIR": str(tmp_path / "reports"),
               **{f"REFRESH_SMTP_{name}": value for name, value in {
                   "HOST": "127.0.0.1", "PORT": str(port), "SECURITY": "none",
                   "SENDER": "refresh@example.org", "RECIPIENTS": "cfo@example.org",
                   "OPERATORS": "ops@example.org"}.items()}}
        open_breaker(warehouse, "restartville/finance")
        with running_daemon(env, log) as daemon:
            wait_for_email(inbox, "restartville/finance", daemon, log)
        assert emails_naming(inbox, "restartville/finance") == 1

        with running_daemon(env, log) as daemon:
            open_breaker(warehouse, "afterwards/finance")
            wait_for_email(inbox, "afterwards/finance", daemon, log)
            # The tick that saw the new breaker saw the old one, still open: not sent again.
            assert emails_naming(inbox, "restartville/finance") == 1
            assert emails_naming(inbox, "afterwards/finance") == 1
