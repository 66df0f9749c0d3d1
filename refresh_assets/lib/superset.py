"""Apache Superset over the marts: its own virtual environment, its configuration and
secrets, the dashboard bundle of `bi/superset/`, and the commands that provision and start it.

Superset lives under `<REFRESH_HOME>/superset`, apart from the project's virtual environment
(its pins, SQLAlchemy 1.4 and pandas 2.1 among them, clash with Dagster's and dbt's):

    venv/                  Superset and what it needs beside it (installed once per requirement list)
    superset_config.py     written on every start; reads the secret key from its file
    superset.db            Superset's metadata (SQLite): users, the database, datasets, charts
    secret_key, admin.password, bi_reader.password
                           generated once, mode 0600; never printed or logged
    install.log, provision.log
                           the output of pip and of Superset's commands

It reads the warehouse as the read-only role of `lib/bi_access` (SELECT on marts only).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import yaml
from psycopg2 import sql

from refresh_assets.lib.bi_access import DEFAULT_ROLE, READABLE_SCHEMA
from refresh_assets.lib.database import ServerAddress
from refresh_assets.settings import PROJECT_DIR, Settings

SUPERSET_VERSION = "6.1.0"
# Superset from the package index does not run without the next ones: its CLI imports rich
# and an engine spec imports cachetools, neither declared; Flask-Caching 2.4 does not work
# with it; psycopg2 is the warehouse's driver.
REQUIREMENTS = (f"apache-superset=={SUPERSET_VERSION}", "rich", "cachetools",
                "flask-caching<2.4", "psycopg2-binary")
BUNDLE_DIR = PROJECT_DIR / "bi" / "superset"
# What `bi/superset/` holds in Superset's import format; its other files are ours.
BUNDLE_PARTS = ("metadata.yaml", "databases", "datasets", "charts", "dashboards")
PROVISION_SCRIPT = BUNDLE_DIR / "provision.py"
ADMIN_USER = "admin"
DASHBOARD_SLUG = "fiscal-health"
# The marts the dashboard reads (bi/superset/datasets/).
DASHBOARD_MARTS = ("risk_level_aggregates", "forecast_cliff_aggregates",
                   "forecast_fiscal_year_aggregates", "city_forecast")
ADMIN_PASSWORD_VARIABLE = "SUPERSET_ADMIN_PASSWORD"
BI_PASSWORD_VARIABLE = "REFRESH_BI_PASSWORD"


class SupersetError(RuntimeError):
    """A step failed; the message is one line saying what to do."""


@dataclass(frozen=True)
class SupersetHome:
    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    def program(self, name: str) -> Path:
        return self.venv / "bin" / name

    @property
    def installed_marker(self) -> Path:
        return self.venv / "refresh-assets-requirements.txt"

    @property
    def config_file(self) -> Path:
        return self.root / "superset_config.py"

    @property
    def secret_key_file(self) -> Path:
        return self.root / "secret_key"

    @property
    def admin_password_file(self) -> Path:
        return self.root / "admin.password"

    @property
    def bi_password_file(self) -> Path:
        return self.root / "bi_reader.password"

    @property
    def metadata_db(self) -> Path:
        return self.root / "superset.db"

    @property
    def install_log(self) -> Path:
        return self.root / "install.log"

    @property
    def provision_log(self) -> Path:
        return self.root / "provision.log"


def superset_home(settings: Settings) -> SupersetHome:
    root = settings.home / "superset"
    # It holds the secrets' files: only their owner may list or read it.
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    return SupersetHome(root)


def kept_secret(path: Path) -> str:
    """The secret kept in `path`, generated and written (mode 0600, created so: never
    readable by others, even for a moment) the first time."""
    if not path.exists():
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # written meanwhile by another start
            pass
        else:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


@dataclass(frozen=True)
class Secret:
    value: str
    origin: str  # where it comes from, to tell the user: a variable or a file, never the value

    def __repr__(self) -> str:  # never the value, should one be printed by mistake
        return f"Secret(origin={self.origin!r})"


def bi_reader_password(settings: Settings, home: SupersetHome,
                       environ: Mapping[str, str]) -> Secret:
    """REFRESH_BI_PASSWORD, or on the embedded server a password generated and kept in
    <home>/superset, so that the dashboard works after `make demo` with nothing to set."""
    if environ.get(BI_PASSWORD_VARIABLE):
        return Secret(environ[BI_PASSWORD_VARIABLE], BI_PASSWORD_VARIABLE)
    if not settings.embedded:
        raise SupersetError(f"set {BI_PASSWORD_VARIABLE} to the {DEFAULT_ROLE} role's password "
                            "(at least 12 characters): with REFRESH_DATABASE_URL none is generated")
    return Secret(kept_secret(home.bi_password_file), str(home.bi_password_file))


def admin_password(home: SupersetHome, environ: Mapping[str, str]) -> Secret:
    if environ.get(ADMIN_PASSWORD_VARIABLE):
        return Secret(environ[ADMIN_PASSWORD_VARIABLE], ADMIN_PASSWORD_VARIABLE)
    return Secret(kept_secret(home.admin_password_file), str(home.admin_password_file))


def marts_without_rows(address: ServerAddress, password: str, role: str = DEFAULT_ROLE) -> list[str]:
    """The dashboard's marts that are missing or empty, read as the BI role (which also
    proves its password and grants)."""
    try:
        conn = psycopg2.connect(host=address.host, port=address.port, user=role, password=password,
                                dbname=address.warehouse_db, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no reason given"
        raise SupersetError(f"the role {role} cannot log in to {address.host}:{address.port} "
                            f"({reason}): check {BI_PASSWORD_VARIABLE}") from None
    empty = []
    try:
        with conn, conn.cursor() as cur:
            for mart in DASHBOARD_MARTS:
                cur.execute("select to_regclass(%s) is not null", (f"{READABLE_SCHEMA}.{mart}",))
                if cur.fetchone()[0]:
                    cur.execute(sql.SQL("select exists (select from {})").format(
                        sql.Identifier(READABLE_SCHEMA, mart)))
                    if cur.fetchone()[0]:
                        continue
                empty.append(f"{READABLE_SCHEMA}.{mart}")
    finally:
        conn.close()
    return empty


def _run(command: list[str], log: Path, on_line: Callable[[str], None] | None = None,
         env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Runs a command with its output appended to `log` (and each line passed to on_line);
    returns its exit status and last line of output."""
    last = ""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, env=env, cwd=log.parent)
        for line in process.stdout:
            out.write(line)
            if line.strip():
                last = line.strip()
                if on_line:
                    on_line(last)
        return process.wait(), last


def install(home: SupersetHome, on_line: Callable[[str], None] | None = None) -> int | None:
    """Creates Superset's virtual environment and installs REQUIREMENTS into it, unless
    they are installed already. Returns the number of packages installed, None if none."""
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if home.installed_marker.exists() and home.installed_marker.read_text() == wanted:
        return None
    python = home.program("python")
    if not python.exists():
        # From the interpreter running this one: the project's Python version, which
        # Superset supports too (>= 3.10).
        status, last = _run([sys.executable, "-m", "venv", str(home.venv)], home.install_log)
        if status != 0:
            raise SupersetError(f"creating {home.venv} failed ({last}); see {home.install_log}")
    status, last = _run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                         "--progress-bar", "off", *REQUIREMENTS], home.install_log, on_line)
    if status != 0:
        raise SupersetError(f"pip could not install Superset ({last}); see {home.install_log}, "
                            "and check that the package index is reachable")
    home.installed_marker.write_text(wanted)
    installed = last.removeprefix("Successfully installed ").split() if last.startswith(
        "Successfully installed") else []
    return len(installed)


CONFIG = '''\
# Written by `refresh-assets bi superset` on every start: changes here are overwritten.
from pathlib import Path

HOME = Path(__file__).resolve().parent
# Generated once, kept in a file of mode 0600 beside this one.
SECRET_KEY = (HOME / "secret_key").read_text().strip()
SQLALCHEMY_DATABASE_URI = f"sqlite:///{HOME / 'superset.db'}?check_same_thread=false"
DATA_DIR = str(HOME)
# The browser loads everything from this server and nothing from elsewhere: Superset's
# default policy allows a tracking pixel (its navigation bar always asks for it) and map
# tiles, which the dashboard does not use.
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}
'''


def configure(home: SupersetHome) -> dict[str, str]:
    """Writes superset_config.py (and the secret key, once); returns the environment every
    Superset command runs in."""
    kept_secret(home.secret_key_file)
    home.config_file.write_text(CONFIG)
    env = {name: value for name, value in os.environ.items()
           # Secrets and paths meant for the project's Python, not Superset's.
           if name not in ("PYTHONPATH", BI_PASSWORD_VARIABLE, ADMIN_PASSWORD_VARIABLE)}
    return {**env, "SUPERSET_CONFIG_PATH": str(home.config_file), "SUPERSET_HOME": str(home.root),
            "PATH": f"{home.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def upgrade_metadata(home: SupersetHome, env: Mapping[str, str]) -> None:
    """`superset db upgrade` then `superset init` (roles and permissions): both safe to
    run again, and needed after an upgrade of Superset."""
    for args in (["db", "upgrade"], ["init"]):
        status, last = _run([str(home.program("superset")), *args], home.provision_log, env=env)
        if status != 0:
            raise SupersetError(f"`superset {' '.join(args)}` failed ({last}); "
                                f"see {home.provision_log}")


def warehouse_uri(address: ServerAddress, password: str, role: str = DEFAULT_ROLE) -> str:
    return ServerAddress(host=address.host, port=address.port, user=role, password=password,
                         warehouse_db=address.warehouse_db).url()


def write_bundle(target: Path, uri: str, source: Path = BUNDLE_DIR) -> Path:
    """The bundle of `source` as Superset imports it (a zip with one top folder), the
    database's URI replaced by `uri`. It holds the password: written with mode 0600, and
    removed by the caller once imported."""
    files = sorted(p for part in BUNDLE_PARTS for p in
                   ([source / part] if part.endswith(".yaml") else (source / part).rglob("*.yaml")))
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as raw, zipfile.ZipFile(raw, "w") as bundle:
        for path in files:
            name = path.relative_to(source).as_posix()
            text = path.read_text()
            if name.startswith("databases/"):
                database = yaml.safe_load(text)
                database["sqlalchemy_uri"] = uri
                text = yaml.safe_dump(database, sort_keys=False)
            bundle.writestr(f"bundle/{name}", text)
    return target


def import_dashboard(home: SupersetHome, env: Mapping[str, str], address: ServerAddress,
                     bi_password: str, admin: Secret) -> None:
    """Makes the admin user (or gives it the password in force) and imports the bundle,
    overwriting the database, datasets, charts and dashboard of an earlier import."""
    bundle = write_bundle(home.root / "bundle.zip", warehouse_uri(address, bi_password))
    try:
        status, last = _run([str(home.program("python")), str(PROVISION_SCRIPT), str(bundle),
                             ADMIN_USER], home.provision_log,
                            env={**env, ADMIN_PASSWORD_VARIABLE: admin.value})
    finally:
        bundle.unlink()
    if status != 0:
        raise SupersetError(f"importing the dashboard failed ({last}); see {home.provision_log}")


def server_command(home: SupersetHome, port: int) -> list[str]:
    """Gunicorn, as Superset runs in production: one worker (SQLite metadata) whose
    threads serve a dashboard's charts in parallel; no control socket (its default path,
    ~/.gunicorn/gunicorn.ctl, would be shared by every Superset of the user)."""
    return [str(home.program("gunicorn")), "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--worker-class", "gthread", "--threads", "8", "--timeout", "120",
            "--no-control-socket", "superset.app:create_app()"]


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (checked as gunicorn binds: with
    SO_REUSEADDR, so a closed connection's TIME_WAIT does not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def dashboard_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/superset/dashboard/{DASHBOARD_SLUG}/"
