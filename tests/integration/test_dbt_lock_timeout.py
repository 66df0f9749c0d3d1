"""A dbt model behind a reader's lock (a BI session left idle in a transaction) fails after
REFRESH_DBT_LOCK_TIMEOUT with PostgreSQL's lock-timeout error, instead of holding the build
and the warehouse_dbt pool slot forever, and leaves the relation readers see as it was."""

import contextlib
from pathlib import Path

import pytest

from refresh_assets.lib.database import connect, warehouse_connection
from tests.forecast_fixtures import dbt_build

pytestmark = pytest.mark.integration

MART = "marts.city_fiscal_years"  # a table: a build replaces it under a new oid
MODEL = MART.split(".")[1]


def relation_state(warehouse) -> tuple[int, list[tuple]]:
    """The mart's oid and rows: a build that replaced it changes the oid."""
    with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
        cur.execute("select %s::regclass::oid", (MART,))
        oid = cur.fetchone()[0]
        cur.execute(f"select * from {MART} order by 1")
        return oid, cur.fetchall()


@pytest.fixture
def built_mart(warehouse, dbt_manifest, tmp_path: Path):
    # The models only: their tests read models outside the selection.
    dbt_build(tmp_path / "first", f"+{MODEL}", data_tests=False)
    return relation_state(warehouse)


def test_a_mart_behind_an_idle_readers_lock_fails_after_the_timeout_and_stays_as_it_was(
        warehouse, built_mart, tmp_path):
    with contextlib.closing(connect(warehouse)) as reader:
        with reader.cursor() as cur:
            cur.execute(f"select count(*) from {MART}")  # opens a transaction, left idle
        blocked = dbt_build(tmp_path / "blocked", MODEL, data_tests=False,
                            env={"REFRESH_DBT_LOCK_TIMEOUT": "2s"}, check=False)
        assert relation_state(warehouse) == built_mart
        reader.rollback()

    assert blocked.returncode != 0, blocked.stdout
    assert "canceling statement due to lock timeout" in blocked.stdout, blocked.stdout
    # Once the reader has gone, the same build replaces the mart.
    dbt_build(tmp_path / "after", MODEL, data_tests=False, env={"REFRESH_DBT_LOCK_TIMEOUT": "2s"})
    assert relation_state(warehouse)[0] != built_mart[0]


def test_a_malformed_lock_timeout_fails_the_build_naming_the_variable(
        warehouse, built_mart, tmp_path):
    result = dbt_build(tmp_path / "bad", MODEL, data_tests=False,
                       env={"REFRESH_DBT_LOCK_TIMEOUT": "soon"}, check=False)
    assert result.returncode != 0
    assert "REFRESH_DBT_LOCK_TIMEOUT: expected a duration" in result.stdout, result.stdout
    assert "got 'soon'" in result.stdout
    assert relation_state(warehouse) == built_mart
