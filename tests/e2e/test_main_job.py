"""The main job end to end: the CLI runs it on the Dagster instance in PostgreSQL."""

import psycopg2
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def mart_counts(address) -> tuple[int, int]:
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute("select count(*), count(distinct city) from marts.city_fiscal_years")
        return cur.fetchone()


def successful_runs(address) -> int:
    with psycopg2.connect(address.libpq_url(address.dagster_db)) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from runs where pipeline_name = 'refresh_all'"
                    " and status = 'SUCCESS'")
        return cur.fetchone()[0]


def test_materialize_fills_the_mart_and_is_idempotent(warehouse, dbt_manifest):
    runs_before = successful_runs(warehouse) if _has_runs_table(warehouse) else 0
    for attempt in (1, 2):
        result = run_cli("materialize")
        assert "[3/3] materialize every asset" in result.stdout
        assert mart_counts(warehouse) == (1841, 477), f"after run {attempt}"
    assert successful_runs(warehouse) == runs_before + 2


def _has_runs_table(address) -> bool:
    with psycopg2.connect(address.libpq_url(address.dagster_db)) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('public.runs') is not null")
        return cur.fetchone()[0]
