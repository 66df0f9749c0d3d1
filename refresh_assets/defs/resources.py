"""Resources shared by the assets: the warehouse connection, the run's city locks, the
source files, the source registry, the reports folder, email, Slack and the dbt CLI."""

import importlib.metadata
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import dagster as dg
import psycopg2.extensions
from dagster_dbt import DbtCliResource
from dagster_slack import SlackResource
from packaging import version
from pydantic import PrivateAttr

from refresh_assets.defs.dbt_project import dbt_project
from refresh_assets.defs.partitions import run_city_keys
from refresh_assets.lib.city_locks import CityRunLocks
from refresh_assets.lib.database import ServerAddress, warehouse_connection
from refresh_assets.lib.notify import SmtpSettings, smtp_settings
from refresh_assets.lib.sources.registry import Registry, load_registry
from refresh_assets.settings import DATA_DIR


class WarehouseResource(dg.ConfigurableResource):
    """The `warehouse` database; every value comes from the environment the CLI exports."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def address(self) -> ServerAddress:
        return ServerAddress(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            warehouse_db=self.database,
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """A connection in one transaction: committed on success, rolled back on error."""
        with warehouse_connection(self.address()) as conn:
            yield conn


class CityLocksResource(dg.ConfigurableResource):
    """Holds a PostgreSQL advisory lock on each of the run's cities from the run's start to
    its end, so a city is refreshed by one run at a time whichever way the run was launched
    (the queue's tag limits only see queued runs). A second run of a city waits, and says
    which run it waits for; runs of different cities never wait on each other."""

    warehouse: WarehouseResource
    _locks: CityRunLocks | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.dagster_run
        cities = run_city_keys(run, context.instance)

        def waiting(city: str, holder: str | None) -> None:
            context.log.warning(f"{city} is being refreshed by run {holder or '(unknown)'}; "
                                "waiting for it to finish")

        self._locks = CityRunLocks(self.warehouse.address(), run.run_id, cities, waiting)
        self._locks.__enter__()
        context.log.info(f"holding the refresh lock of {len(cities)} city(ies)")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._locks is not None:
            self._locks.__exit__(None, None, None)


class SmtpResource(dg.ConfigurableResource):
    """Stakeholder and operator email settings, from the REFRESH_SMTP_* variables (empty: no email).
    Checked when an email is sent, so a bad setting fails the email, never the refresh."""

    host: str = ""
    port: str = ""
    security: str = ""
    user: str = ""
    password: str = ""
    sender: str = ""
    recipients: str = ""
    operators: str = ""

    def settings(self, *, operators: bool = False) -> SmtpSettings | None:
        """Raises SmtpSettingsError naming the variable at fault."""
        return smtp_settings({f"REFRESH_SMTP_{name.upper()}": getattr(self, name)
                              for name in SmtpResource.model_fields}, operators=operators)


class SlackAlertsResource(dg.ConfigurableResource):
    """Operator alerts to Slack through dagster-slack, when SLACK_TOKEN is set (empty: off)."""

    token: str = ""
    channel: str = ""
    api_url: str = ""  # another Web API endpoint: a proxy, or a local server in the tests

    def poster(self) -> Callable[[str], None] | None:
        """Posts a message to the channel (raises the client's error), or None when off."""
        if not self.token:
            return None
        client = SlackResource(token=self.token).get_client()
        if self.api_url:
            client.base_url = self.api_url.rstrip("/") + "/"
        channel = self.channel or "#refresh-assets"
        return lambda text: client.chat_postMessage(channel=channel, text=text)


class SourceFilesResource(dg.ConfigurableResource):
    """Where the figures come from: operator entry files and the published bulk data set."""

    entries_dir: str
    bulk_import_csv: str = str(DATA_DIR / "ca_city_fiscal_inputs.csv")
    calpers_valuations_csv: str = str(DATA_DIR / "calpers_valuations_2016.csv")


class SourceRegistryResource(dg.ConfigurableResource):
    """The source registry (sources.yaml) and where downloaded documents are stored."""

    sources_file: str
    documents_dir: str

    def registry(self) -> Registry:
        """Raises RegistryError listing every problem of the file."""
        return load_registry(Path(self.sources_file))


class ReportsResource(dg.ConfigurableResource):
    """Where the "what changed" reports are written."""

    reports_dir: str


class VenvDbtCliResource(DbtCliResource):
    """The dbt CLI of this venv (so an unactivated venv, under make or the daemon, finds it).

    dagster-dbt asks the executable for its version (`dbt --version`) in every run: a
    subprocess of 2.6 s here, 5 s on a busy machine, on the path from an entry to the marts.
    The venv's dbt is the installed dbt-core package, whose version its metadata gives."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))


def _dbt_resource() -> DbtCliResource:
    beside_python = Path(sys.executable).parent / "dbt"
    if beside_python.exists():
        return VenvDbtCliResource(project_dir=dbt_project, dbt_executable=str(beside_python))
    return DbtCliResource(project_dir=dbt_project)


def build_resources() -> dict[str, dg.ConfigurableResource]:
    warehouse = WarehouseResource(
        host=dg.EnvVar("REFRESH_DB_HOST"),
        port=dg.EnvVar.int("REFRESH_DB_PORT"),
        user=dg.EnvVar("REFRESH_DB_USER"),
        password=dg.EnvVar("REFRESH_DB_PASSWORD"),
        database=dg.EnvVar("REFRESH_DB_WAREHOUSE"),
    )
    return {
        "warehouse": warehouse,
        "city_locks": CityLocksResource(warehouse=warehouse),
        "smtp": SmtpResource(**{name: dg.EnvVar(f"REFRESH_SMTP_{name.upper()}")
                                for name in SmtpResource.model_fields}),
        "slack": SlackAlertsResource(token=dg.EnvVar("SLACK_TOKEN"),
                                     channel=dg.EnvVar("SLACK_CHANNEL"),
                                     api_url=dg.EnvVar("SLACK_API_URL")),
        "source_files": SourceFilesResource(entries_dir=dg.EnvVar("REFRESH_ENTRIES_DIR")),
        "reports": ReportsResource(reports_dir=dg.EnvVar("REFRESH_REPORTS_DIR")),
        "source_registry": SourceRegistryResource(sources_file=dg.EnvVar("REFRESH_SOURCES_FILE"),
                                                  documents_dir=dg.EnvVar("REFRESH_DOCUMENTS_DIR")),
        "dbt": _dbt_resource(),
    }
