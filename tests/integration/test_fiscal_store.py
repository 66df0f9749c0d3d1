"""raw.fiscal_entries is append-only and deduplicated per source, on the real server."""

import pandas as pd
import pytest

from refresh_assets.lib.database import connect, warehouse_connection
from refresh_assets.lib.fiscal_store import append_entry_versions, load_entry_versions
from refresh_assets.lib.migrations import available_migrations, migrate

pytestmark = pytest.mark.integration


def version(revenue: float, path: str = "store-test/2019.yaml") -> pd.DataFrame:
    return pd.DataFrame([{"city": "Benicia", "fiscal_year": 2019, "population": 28000,
                          "gf_revenues": revenue, "source_kind": "entry_file",
                          "source_path": path}])


def test_identical_submissions_add_nothing_and_a_revert_is_a_new_version(warehouse):
    with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
        cur.execute("delete from raw.fiscal_entries where source_path like 'store-test/%'")
    added = []
    for revenue in (1.0, 1.0, 2.0, 1.0):
        with warehouse_connection(warehouse) as conn:
            added.append(len(append_entry_versions(conn, version(revenue))))
    assert added == [1, 0, 1, 1]
    with warehouse_connection(warehouse) as conn:
        stored = load_entry_versions(conn, ["benicia"])
    mine = stored[stored["source_path"] == "store-test/2019.yaml"]
    assert [float(v) for v in mine["gf_revenues"]] == [1.0, 2.0, 1.0]
    assert mine["entry_version"].is_monotonic_increasing


def test_a_failed_append_inserts_nothing(warehouse):
    bad = pd.concat([version(3.0, "store-test/a.yaml"), version(4.0, "store-test/b.yaml")])
    bad["population"] = [1, 10**12]  # beyond an integer column: COPY fails
    with pytest.raises(Exception, match="out of range"), warehouse_connection(warehouse) as conn:
        append_entry_versions(conn, bad)
    with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from raw.fiscal_entries"
                    " where source_path in ('store-test/a.yaml', 'store-test/b.yaml')")
        assert cur.fetchone()[0] == 0


def test_the_same_values_read_differently_are_not_a_new_version(warehouse):
    """The checksum is over canonical values: 15000000, 15000000.0 and "15000000.00" agree."""
    path = "store-test/canonical.yaml"
    with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
        cur.execute("delete from raw.fiscal_entries where source_path = %s", (path,))
    added = []
    for revenue in (15_000_000, 15_000_000.0, "15000000.00", "15000000.5"):
        with warehouse_connection(warehouse) as conn:
            added.append(len(append_entry_versions(conn, version(revenue, path))))
    assert added == [1, 0, 0, 1]


def test_migrations_are_applied_once_and_recorded(warehouse):
    """The fixture bootstrapped the server; migrating again applies nothing."""
    conn = connect(warehouse)
    conn.autocommit = True
    try:
        assert migrate(conn) == []
        with conn.cursor() as cur:
            cur.execute("select version, name from ops.schema_migrations order by version")
            recorded = cur.fetchall()
    finally:
        conn.close()
    assert recorded == [(m.version, m.name) for m in available_migrations()]
    assert [v for v, _ in recorded] == list(range(1, len(recorded) + 1))
