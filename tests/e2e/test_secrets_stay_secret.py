"""Secrets stay secret: with the database, SMTP and BI passwords set to distinctive values (the
database reached through REFRESH_DATABASE_URL as a role of its own, an SMTP server that
requires a login, the BI role granted), a full refresh through the CLI, a failed run and the
daemon's sensor ticks (one of them launching a city's refresh, another alerting operators of
the failed run) leave none of them, plain or URL-encoded, in:

- the terminal output of every command and of the daemon;
- any file under the instance's home (compute logs, event log files, the PostgreSQL log and
  data files, reports, exports) and what Dagster and dbt wrote in the project (DAGSTER_HOME);
- every row of every table of the Dagster database (the event log's serialized events, the
  runs with their config and tags, ticks) and of the warehouse;
- the runs' configs and tags and the assets' materialization metadata, read through Dagster;
- the emails sent.

Each password is shown to have been used (an email sent after the SMTP login, the BI role
logging in, the runs reaching the database), and the scanner to find a canary put in each
kind of place it scans."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import dagster as dg
import psycopg2
import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from psycopg2 import sql

from refresh_assets.lib.bi_access import DEFAULT_ROLE
from refresh_assets.lib.run_tags import CITY as CITY_TAG
from refresh_assets.lib.runtime import server_address
from refresh_assets.settings import PROJECT_DIR, load_settings
from tests.conftest import VENV_BIN, free_port, run_cli
from tests.reliability_fixtures import daemon_environment, instance_of, running_daemon, wait_until
from tests.smtp_fixtures import Inbox
from tests.ui_fixtures import own_instance

pytestmark = pytest.mark.e2e

TOKEN = secrets.token_hex(8)
# Distinctive, with the characters URLs, YAML and shells treat specially.
DB_PASSWORD = f"Dbpw-{TOKEN}-@:/%?#&+=!"
SMTP_PASSWORD = f"Smtppw-{TOKEN}-%&@/ ;"
BI_PASSWORD = f"Bipw-{TOKEN}-@#%/:"
PASSWORDS = {"database": DB_PASSWORD, "smtp": SMTP_PASSWORD, "bi": BI_PASSWORD}
DB_USER, SMTP_USER = "leak_probe", "mailer"
CITY_KEY = "vallejo"  # refreshed by the entries sensor
FAILING_CITY_KEY = "benicia"  # its run fails (no lock shared with the sensor's run)
# What a run of a city takes on a busy machine, with the daemon loading its code first.
DAEMON_SECONDS = 300
# Project folders Dagster (DAGSTER_HOME is the project) and dbt write into during the runs.
PROJECT_OUTPUTS = ("logs", "storage", "history", "schedules", ".logs_queue", ".nux",
                   ".telemetry", "dbt_project/logs", "dbt_project/target")


def forms(secret: str) -> set[str]:
    """The ways a password may be written: as is, URL-encoded, and its distinctive core."""
    return {secret, quote(secret, safe=""), quote_plus(secret), secret.split("-", 2)[0]
            + "-" + secret.split("-", 2)[1]}


def found_in(text: str | bytes, secret_forms: dict[str, set[str]]) -> list[str]:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return sorted({name for name, ways in secret_forms.items()
                   for way in ways if way.encode() in data})


@dataclass
class Scan:
    """Where each secret was found: place -> names of the secrets found there."""

    leaks: dict[str, list[str]] = field(default_factory=dict)
    places: int = 0

    def look(self, place: str, text: str | bytes, secret_forms: dict[str, set[str]]) -> None:
        self.places += 1
        found = found_in(text, secret_forms)
        if found:
            self.leaks[place] = found


def scan_files(scan: Scan, root: Path, secret_forms, since: float = 0.0) -> None:
    """Every regular file under root (modified after `since`), whole, as bytes."""
    if not root.exists():
        return
    for path in [root] if root.is_file() else root.rglob("*"):
        with contextlib.suppress(OSError):  # a file that went away meanwhile
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= since:
                scan.look(str(path), path.read_bytes(), secret_forms)


def scan_databases(scan: Scan, url: str, secret_forms) -> None:
    """Every row of every table of the Dagster database and the warehouse, as JSON text."""
    for database in ("dagster", "warehouse"):
        with contextlib.closing(psycopg2.connect(url.rsplit("/", 1)[0] + f"/{database}")) as conn:
            conn.set_session(readonly=True)
            with conn.cursor() as cur:
                cur.execute("select table_schema, table_name from information_schema.tables"
                            " where table_schema not in ('pg_catalog', 'information_schema')")
                names = cur.fetchall()
                for schema, table in names:
                    cur.execute(sql.SQL("select row_to_json(t)::text from {} as t").format(
                        sql.Identifier(schema, table)))
                    text = "\n".join(row for (row,) in cur.fetchall())
                    scan.look(f"{database}: {schema}.{table}", text, secret_forms)


def scan_instance(scan: Scan, instance: dg.DagsterInstance, secret_forms) -> int:
    """Through Dagster: every run's config and tags, every event of every run (serialized),
    and each asset's latest materialization metadata. Returns how many runs there were."""
    records = instance.get_run_records()
    for record in records:
        run = record.dagster_run
        scan.look(f"run {run.run_id} config and tags",
                  json.dumps({"config": run.run_config, "tags": run.tags}, default=str),
                  secret_forms)
        events = instance.all_logs(run.run_id)
        scan.look(f"run {run.run_id} event log",
                  "\n".join(dg.serialize_value(event) for event in events), secret_forms)
    for key in instance.all_asset_keys():
        event = instance.get_latest_materialization_event(key)
        if event and event.asset_materialization:
            scan.look(f"materialization of {key.to_user_string()}",
                      json.dumps({k: str(v.value) for k, v in
                                  event.asset_materialization.metadata.items()}), secret_forms)
    return len(records)


class LoginRequired:
    """aiosmtpd authenticator: only SMTP_USER with SMTP_PASSWORD; counts the logins."""

    def __init__(self) -> None:
        self.logins = 0

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
              and auth_data.password == SMTP_PASSWORD.encode())
        self.logins += ok
        return AuthResult(success=ok)


@contextlib.contextmanager
def smtp_with_login() -> Iterator[tuple[Inbox, LoginRequired, int]]:
    inbox, authenticator, port = Inbox(), LoginRequired(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    try:
        yield inbox, authenticator, port
    finally:
        controller.stop()


@dataclass
class Outputs:
    """What the runs left to look at, and the proof each password was used."""

    env: dict[str, str]
    home: Path
    started: float
    terminal: dict[str, str]
    inbox: Inbox
    smtp_logins: int
    failed_run: str
    sensor_run: str
    database_url: str


def command(name: str, args: list[str], env: dict[str, str], outputs: dict[str, str],
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    outputs[name] = result.stdout + result.stderr
    return result


def with_database_role(env: dict[str, str], terminal: dict[str, str]
                       ) -> tuple[dict[str, str], str]:
    """Starts the embedded server, adds a login of its own with DB_PASSWORD, and returns the
    environment that reaches the warehouse through it (REFRESH_DATABASE_URL)."""
    started = run_cli("db", "start", env=env)
    terminal["db start"] = started.stdout + started.stderr
    address = server_address(load_settings(env))
    with contextlib.closing(psycopg2.connect(address.libpq_url())) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("create role {} login superuser password %s").format(
                sql.Identifier(DB_USER)), (DB_PASSWORD,))
    url = (f"postgresql://{DB_USER}:{quote(DB_PASSWORD, safe='')}@{address.host}:{address.port}"
           f"/{address.warehouse_db}")
    return {**env, "REFRESH_DATABASE_URL": url}, url


def changed_entry(entries: Path) -> None:
    """A new version of the city's last year, as an operator saves it."""
    path = entries / CITY_KEY / "2020.yaml"
    document = yaml.safe_load(path.read_text())
    document["figures"]["gf_unrestricted_fund_balance"] += 1_000
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def plain_text(message) -> str:
    return "\n".join(part.get_content() for part in message.walk()
                     if part.get_content_type() == "text/plain")


def runs_of(instance: dg.DagsterInstance, **tags: str) -> list[dg.DagsterRun]:
    return [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(tags=tags))]


def failure_sensor_ticked(instance: dg.DagsterInstance) -> bool:
    states = [s for s in instance.all_instigator_state()
              if s.instigator_name == "refresh_failure_sensor"]
    return any(instance.get_ticks(s.instigator_origin_id, s.selector_id) for s in states)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Iterator[Outputs]:
    home = tmp_path_factory.mktemp("secrets_home")
    started = time.time()
    terminal: dict[str, str] = {}
    with own_instance(home) as base_env, smtp_with_login() as (inbox, logins, smtp_port):
        env, url = with_database_role(base_env, terminal)
        entries = Path(env["REFRESH_ENTRIES_DIR"])
        shutil.copytree(PROJECT_DIR / "entries" / CITY_KEY, entries / CITY_KEY)
        env |= {"REFRESH_BI_PASSWORD": BI_PASSWORD,
                **{f"REFRESH_SMTP_{name}": value for name, value in {
                    "HOST": "127.0.0.1", "PORT": str(smtp_port), "SECURITY": "none",
                    "USER": SMTP_USER, "PASSWORD": SMTP_PASSWORD,
                    "SENDER": "refresh@example.org", "RECIPIENTS": "cfo@example.org",
                    "OPERATORS": "ops@example.org"}.items()}}
        cli = str(VENV_BIN / "refresh-assets")

        # A full refresh through the CLI, then the BI role.
        full = command("materialize", [cli, "materialize"], env, terminal)
        assert full.returncode == 0, terminal["materialize"]
        assert command("bi grant", [cli, "bi", "grant"], env, terminal).returncode == 0, \
            terminal["bi grant"]

        # runtime_environment passes on the test process's (empty) SMTP variables: set ours last.
        dagster_env = daemon_environment(env, **{name: value for name, value in env.items()
                                                 if name.startswith("REFRESH_SMTP_")})
        log = home / "daemon.log"
        changed_entry(entries)
        with running_daemon(dagster_env, log) as daemon, instance_of(env) as instance:
            # A tick of the entries sensor launches the city's refresh.
            sensor_run = wait_until(
                "refresh launched by the entries sensor",
                lambda: runs_of(instance, **{CITY_TAG: CITY_KEY, "refresh/trigger": "sensor"}),
                DAEMON_SECONDS, seen=daemon.log_tail)[0].run_id
            wait_until("the run failure sensor's first tick",
                       lambda: failure_sensor_ticked(instance), DAEMON_SECONDS,
                       seen=daemon.log_tail)

            # A failed run, launched as the UI launches one: a city's refresh without the
            # published data set.
            config = home / "missing_bulk.yaml"
            config.write_text(yaml.safe_dump({"resources": {"source_files": {"config": {
                "entries_dir": str(entries), "bulk_import_csv": str(home / "missing.csv")}}}}))
            failed_run = str(uuid.uuid4())
            launched = command("failed run launch", [
                str(VENV_BIN / "dagster"), "job", "launch", "-w", "workspace.yaml",
                "-j", "refresh_city", "-c", str(config), "--run-id", failed_run, "--tags",
                json.dumps({"dagster/partition": FAILING_CITY_KEY, "refresh/trigger": "manual"})],
                dagster_env, terminal)
            assert launched.returncode == 0, terminal["failed run launch"]
            wait_until("the launched run to fail",
                       lambda: (run := instance.get_run_by_id(failed_run)) and run.is_finished,
                       DAEMON_SECONDS, seen=daemon.log_tail)
            # The failure sensor alerts operators (an email after the SMTP login).
            wait_until("the operators' email about the failed run",
                       lambda: any(failed_run in plain_text(m) for m in inbox.messages()),
                       DAEMON_SECONDS, seen=daemon.log_tail)
            wait_until("the sensor's run to end",
                       lambda: instance.get_run_by_id(sensor_run).is_finished,
                       DAEMON_SECONDS, seen=daemon.log_tail)
        terminal["daemon"] = log.read_text(errors="replace")
        yield Outputs(env, home, started, terminal, inbox, logins.logins, failed_run, sensor_run,
                      url)


def test_each_password_was_used(outputs):
    """The scan means something only if the secrets were in play."""
    assert outputs.smtp_logins >= 2  # the change reports, the failure alert
    assert any(outputs.failed_run in plain_text(m) for m in outputs.inbox.messages())
    with instance_of(outputs.env) as instance:
        assert instance.get_run_by_id(outputs.sensor_run).status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_run_by_id(outputs.failed_run).status == dg.DagsterRunStatus.FAILURE
    address = server_address(load_settings(outputs.env))
    with contextlib.closing(psycopg2.connect(
            host=address.host, port=address.port, dbname=address.warehouse_db,
            user=DEFAULT_ROLE, password=BI_PASSWORD)) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from marts.city_fiscal_years")
        assert cur.fetchone()[0] > 0


def full_scan(outputs: Outputs, secret_forms: dict[str, set[str]]) -> Scan:
    scan = Scan()
    for name, text in outputs.terminal.items():
        scan.look(f"terminal output of {name}", text, secret_forms)
    for message in outputs.inbox.messages():
        scan.look(f"email {message['Subject']!r}", message.as_string(), secret_forms)
    scan_files(scan, outputs.home, secret_forms)
    for folder in PROJECT_OUTPUTS:
        scan_files(scan, PROJECT_DIR / folder, secret_forms, since=outputs.started)
    scan_databases(scan, outputs.database_url, secret_forms)
    with instance_of(outputs.env) as instance:
        assert scan_instance(scan, instance, secret_forms) >= 3
    return scan


def test_no_password_is_left_anywhere(outputs):
    scan = full_scan(outputs, {name: forms(secret) for name, secret in PASSWORDS.items()})
    assert scan.leaks == {}
    assert scan.places > 100


def test_the_scan_finds_a_canary_in_each_kind_of_place(outputs):
    """A value planted in a compute log, a run's tags, a materialization's metadata and the
    event log (URL-encoded in one of them) is found where it was put."""
    canary = f"Canary-{TOKEN}-@:/%"
    with instance_of(outputs.env) as instance:
        storage = Path(load_settings(outputs.env).dagster_storage_dir)
        [compute_log, *_] = sorted(storage.rglob("*.err")) or sorted(storage.rglob("*.out"))
        with compute_log.open("a") as log:
            log.write(f"\n{quote(canary, safe='')}\n")
        instance.add_run_tags(outputs.failed_run, {"canary": canary})
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key="canary_asset", metadata={"canary": canary}))
    scan = full_scan(outputs, {"canary": forms(canary)})
    places = set(scan.leaks)
    assert str(compute_log) in places
    assert f"run {outputs.failed_run} config and tags" in places
    assert "materialization of canary_asset" in places
    assert any(place.startswith("dagster: public.event_logs") for place in places)
    assert any(place.startswith("dagster: public.run") for place in places)  # runs, run_tags
