"""Bulk import of the published fiscal inputs into `raw`.

No `from __future__ import annotations` in defs/: Dagster reads the annotations at definition time."""

from pathlib import Path

import dagster as dg

from refresh_assets.defs.resources import WarehouseResource
from refresh_assets.lib.fiscal_inputs import (
    BULK_IMPORT_TABLE,
    FiscalInputsError,
    file_checksum,
    read_fiscal_inputs_csv,
    replace_bulk_import,
)
from refresh_assets.settings import DATA_DIR


class BulkImportConfig(dg.Config):
    path: str = str(DATA_DIR / "ca_city_fiscal_inputs.csv")


@dg.asset(
    key=["raw", BULK_IMPORT_TABLE],
    group_name="ingestion",
    kinds={"python", "postgres"},
    description=(
        "The State Auditor's published fiscal inputs for California cities (FY2017-FY2020), "
        "loaded from the CSV shipped in data/. A failed load leaves the stored rows untouched."
    ),
)
def state_auditor_fiscal_inputs(
    context: dg.AssetExecutionContext, config: BulkImportConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    path = Path(config.path)
    try:
        frame = read_fiscal_inputs_csv(path)
    except FiscalInputsError as exc:
        # A Failure shows the message itself in the UI, without a stack trace to dig through.
        raise dg.Failure(description=str(exc), metadata={"file": str(path)}) from exc
    checksum = file_checksum(path)
    with warehouse.connection() as conn:
        rows = replace_bulk_import(conn, frame, source_file=path.name, checksum=checksum)
    context.log.info(f"loaded {rows} rows from {path.name}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "cities": int(frame["city"].nunique()),
            "fiscal_years": sorted(int(y) for y in frame["fiscal_year"].unique()),
            "source_file": path.name,
            "source_checksum": checksum,
        },
        data_version=dg.DataVersion(checksum),
    )
