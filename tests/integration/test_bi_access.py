"""The BI role reads the marts, present and future, and is refused everything else."""

import os

import psycopg2
import pytest
from psycopg2 import errors

from refresh_assets.lib.bi_access import IDLE_IN_TRANSACTION_TIMEOUT
from refresh_assets.lib.database import connect
from tests.conftest import run_cli

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery staple"
# A role of this test's own: `make bi`'s test grants the default bi_reader in the same session.
ROLE = "bi_access_test_reader"


def as_bi(address, database=None):
    return psycopg2.connect(host=address.host, port=address.port, user=ROLE,
                            password=PASSWORD, dbname=database or address.warehouse_db)


def execute(address, statement):
    conn = connect(address)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def test_bi_reader_reads_marts_present_and_future_and_nothing_else(warehouse):
    execute(warehouse, "create table if not exists marts.bi_before (n int); "
                       "insert into marts.bi_before values (1)")
    missing = run_cli("bi", "grant", env={k: v for k, v in os.environ.items()
                                          if k != "REFRESH_BI_PASSWORD"}, check=False)
    assert missing.returncode == 1
    assert "set REFRESH_BI_PASSWORD" in missing.stderr

    env = {**os.environ, "REFRESH_BI_PASSWORD": PASSWORD}
    granted = run_cli("bi", "grant", "--role", ROLE, env=env)
    assert f"role {ROLE} created" in granted.stdout
    assert PASSWORD not in granted.stdout + granted.stderr
    # A table dbt creates later is readable too (default privileges).
    execute(warehouse, "drop table if exists marts.bi_after; create table marts.bi_after (n int); "
                       "insert into marts.bi_after values (2)")
    assert f"role {ROLE} updated" in run_cli("bi", "grant", "--role", ROLE, env=env).stdout

    with as_bi(warehouse) as conn, conn.cursor() as cur:
        cur.execute("select n from marts.bi_before union all select n from marts.bi_after order by 1")
        assert cur.fetchall() == [(1,), (2,)]
        # A session left idle in a transaction is ended, and its read locks with it.
        cur.execute("show idle_in_transaction_session_timeout")
        assert cur.fetchone() == (IDLE_IN_TRANSACTION_TIMEOUT,)
    for table in ("raw.fiscal_entries", "ops.refresh_operations", "analytics.risk_scores"):
        with as_bi(warehouse) as conn, conn.cursor() as cur, pytest.raises(
                errors.InsufficientPrivilege, match=r"permission denied for schema"):
            cur.execute(f"select * from {table} limit 1")
    with as_bi(warehouse) as conn, conn.cursor() as cur, pytest.raises(errors.InsufficientPrivilege):
        cur.execute("create table marts.bi_written (n int)")
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        as_bi(warehouse, warehouse.dagster_db)
