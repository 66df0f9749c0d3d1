"""Loading the published data set into `raw` on the real test server."""

import csv

import pytest

from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.fiscal_inputs import (
    FiscalInputsError,
    file_checksum,
    read_fiscal_inputs_csv,
    replace_bulk_import,
)
from refresh_assets.settings import DATA_DIR

pytestmark = pytest.mark.integration
SHIPPED = DATA_DIR / "ca_city_fiscal_inputs.csv"


def count_rows(address) -> tuple[int, int]:
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute("select count(*), count(distinct city) from raw.state_auditor_fiscal_inputs")
        return cur.fetchone()


def load(address, path):
    frame = read_fiscal_inputs_csv(path)
    with warehouse_connection(address) as conn:
        return replace_bulk_import(conn, frame, source_file=path.name, checksum=file_checksum(path))


def test_import_is_exact_and_idempotent(warehouse):
    assert load(warehouse, SHIPPED) == 1841
    assert load(warehouse, SHIPPED) == 1841
    assert count_rows(warehouse) == (1841, 477)
    with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
        cur.execute(
            "select pension_contribution_projected::text, source_row"
            " from raw.state_auditor_fiscal_inputs where city = 'Adelanto' and fiscal_year = 2017"
        )
        assert cur.fetchone() == ("244029.73", 2)


def test_a_bad_file_leaves_the_stored_rows_untouched(warehouse, tmp_path):
    load(warehouse, SHIPPED)
    rows = list(csv.reader(SHIPPED.open()))
    rows[10][rows[0].index("fiscal_year")] = "twenty-eighteen"
    broken = tmp_path / "broken.csv"
    with broken.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(FiscalInputsError, match="line 11, field fiscal_year"):
        load(warehouse, broken)
    assert count_rows(warehouse) == (1841, 477)


def test_a_failure_inside_the_transaction_rolls_back(warehouse):
    load(warehouse, SHIPPED)
    frame = read_fiscal_inputs_csv(SHIPPED)
    frame.loc[5, "population"] = 10**12  # beyond PostgreSQL's integer: COPY fails mid-load
    with pytest.raises(Exception, match="out of range"):
        with warehouse_connection(warehouse) as conn:
            replace_bulk_import(conn, frame, source_file="x.csv", checksum="x")
    assert count_rows(warehouse) == (1841, 477)
