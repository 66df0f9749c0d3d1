"""Per-city exports: each city's scores, forecast, validation issues and status, read from the
marts and written as files (Parquet by default) for those who take files, not a database."""

from pathlib import Path

import dagster as dg
import pandas as pd

from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.reports import CHANGE_REPORT
from refresh_assets.defs.resources import WarehouseResource
from refresh_assets.lib.exports import LAST_VALID, MARTS, NO_DATA, read_marts, write_exports

CITY_EXPORTS = dg.AssetKey(["exports", "city_exports"])
MARTS_READ = [dg.AssetKey(["marts", mart]) for mart in MARTS]
DATA_STATUS = "data_status"


class ExportsResource(dg.ConfigurableResource):
    """Where the per-city exports are written (REFRESH_EXPORTS_DIR), and in which format."""

    exports_dir: str
    file_format: str = "parquet"


def exports_resource() -> ExportsResource:
    return ExportsResource(exports_dir=dg.EnvVar("REFRESH_EXPORTS_DIR"))


def _updated(selection: dg.AssetSelection) -> dg.AutomationCondition:
    """A dependency among `selection` was materialized since the previous tick (by a run
    that does not also export: the main job exports in the same run)."""
    return dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated() & ~dg.AutomationCondition.executed_with_root_target()
    ).allow(selection)


# Per city: once its refresh has ended (its change report, failed or not, is materialized)
# and the marts were rebuilt after it. Plain eager() would export every city whenever a
# mart is rebuilt, since the marts have no partitions: 477 cities for each one refreshed.
_city_refreshed = _updated(dg.AssetSelection.assets(CHANGE_REPORT)).with_label("city refreshed")
_marts_rebuilt = _updated(dg.AssetSelection.assets(*MARTS_READ)).with_label("marts rebuilt")
EXPORT_AFTER_REFRESH = (
    _city_refreshed.since_last_handled()
    & _marts_rebuilt.since(_city_refreshed)
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("export after the city's refresh reached the marts")


@dg.asset(
    key=CITY_EXPORTS,
    group_name="exports",
    kinds={"python", "parquet"},
    # The change report ends a city's refresh: it maps the export to that city's partition.
    deps=[*MARTS_READ, CHANGE_REPORT],
    partitions_def=city_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=EXPORT_AFTER_REFRESH,
    description=(
        "Per city: scores, forecast, validation issues and status, read from the marts in one "
        "snapshot and written as files under REFRESH_EXPORTS_DIR/<format>/<city_key>/ with a "
        "manifest (rows, SHA-256); docs/EXPORTS.md. A city whose latest refresh failed exports "
        "the last valid data the marts keep, with data_status 'last_valid' and the failure. "
        "Part of the main job refresh_all (a full refresh ends with every city's files), and "
        "re-exported by declarative automation for each city refreshed on its own (sensor, UI, "
        "refresh-assets refresh) once the marts were rebuilt after it: that city only."
    ),
)
def city_exports(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                 exports: ExportsResource):
    with warehouse.connection() as conn:
        cities = read_marts(conn, context.partition_keys)
    result = write_exports(cities, Path(exports.exports_dir), exports.file_format)

    # One call for every city, then the exceptions: a partition-scoped call per city costs
    # O(cities²) over a range (defs/outcomes.py).
    context.add_asset_metadata({DATA_STATUS: "current"})
    for city in result.cities:
        if city.data_status != "current":
            context.add_asset_metadata({DATA_STATUS: city.data_status},
                                       partition_key=city.city_key)
    last_valid = result.with_status(LAST_VALID)
    for city in last_valid:
        context.log.warning(f"{city.city_key}: exported its last valid data; its latest refresh "
                            f"failed at {city.failure_stage}: {city.failure_reason}")
    table = pd.DataFrame([{"city": c.city_key, "stage": c.failure_stage,
                           "failed_at": c.failed_at, "reason": c.failure_reason}
                          for c in last_valid], columns=["city", "stage", "failed_at", "reason"])
    rows = result.rows
    return dg.MaterializeResult(metadata={
        "cities_exported": dg.MetadataValue.int(len(result.cities)),
        "format": result.file_format,
        "folder": dg.MetadataValue.path(str(result.folder)),
        "rows": dg.MetadataValue.int(sum(rows.values())),
        "rows_by_dataset": dg.MetadataValue.json(rows),
        "cities_last_valid": dg.MetadataValue.int(len(last_valid)),
        "last_valid_cities": dg.MetadataValue.md(table.head(50).to_markdown(index=False)
                                                 if len(table) else "none"),
        "cities_without_data": sorted(c.city_key for c in result.with_status(NO_DATA)),
    })
