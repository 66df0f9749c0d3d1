"""Resources shared by the assets: the warehouse connection and the dbt CLI."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg2.extensions
from dagster_dbt import DbtCliResource

from refresh_assets.defs.dbt_project import dbt_project
from refresh_assets.lib.database import ServerAddress, warehouse_connection
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


class SourceFilesResource(dg.ConfigurableResource):
    """Where the figures come from: operator entry files and the published bulk data set."""

    entries_dir: str
    bulk_import_csv: str = str(DATA_DIR / "ca_city_fiscal_inputs.csv")
    calpers_valuations_csv: str = str(DATA_DIR / "calpers_valuations_2016.csv")


class ReportsResource(dg.ConfigurableResource):
    """Where the "what changed" reports are written."""

    reports_dir: str


def _dbt_executable() -> str:
    # The venv's dbt, so an unactivated venv (make, the daemon) still finds it.
    beside_python = Path(sys.executable).parent / "dbt"
    return str(beside_python) if beside_python.exists() else "dbt"


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(
            host=dg.EnvVar("REFRESH_DB_HOST"),
            port=dg.EnvVar.int("REFRESH_DB_PORT"),
            user=dg.EnvVar("REFRESH_DB_USER"),
            password=dg.EnvVar("REFRESH_DB_PASSWORD"),
            database=dg.EnvVar("REFRESH_DB_WAREHOUSE"),
        ),
        "source_files": SourceFilesResource(entries_dir=dg.EnvVar("REFRESH_ENTRIES_DIR")),
        "reports": ReportsResource(reports_dir=dg.EnvVar("REFRESH_REPORTS_DIR")),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=_dbt_executable()),
    }
