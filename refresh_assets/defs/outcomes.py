"""How a city-partitioned asset says what happened to each city: a line of metadata on each
city's materialization, and a table of the failures, beside the rows in ops."""

from collections.abc import Mapping

import dagster as dg
import pandas as pd

from refresh_assets.lib import refresh_outcomes
from refresh_assets.lib.cities import known_cities
from refresh_assets.lib.database import table_columns
from refresh_assets.lib.run_tags import refresh_trigger

OUTCOME = "city_outcome"


def held_cities(context: dg.AssetExecutionContext, conn) -> dict[str, str]:
    """City key -> stage, for the cities an earlier step of this run recorded as failed."""
    return refresh_outcomes.failed_cities(conn, context.run.run_id)


def record_failures(context: dg.AssetExecutionContext, conn, stage: str,
                    errors: Mapping[str, str]) -> None:
    """Records each city's failure at `stage` in ops and logs it, one line per city."""
    if not errors:
        return
    names = known_cities()
    failures = pd.DataFrame([{"city_key": key, "city": names.get(key, key), "error": error}
                             for key, error in sorted(errors.items())])
    refresh_outcomes.record_failures(conn, context.run.run_id, refresh_trigger(context.run.tags),
                                     stage, failures)
    for key, error in sorted(errors.items()):
        context.log.error(f"{key}: {stage} failed, the city keeps its last valid results: {error}")


def describe_cities(context: dg.AssetExecutionContext, stage: str, errors: Mapping[str, str],
                    held: Mapping[str, str]) -> dict[str, dg.MetadataValue]:
    """Puts each city's outcome on its own materialization and returns the step's summary
    metadata (counts and a table of the cities that failed here or before)."""
    # Every city "refreshed" in one call, then the exceptions city by city: Dagster checks a
    # partition-scoped call against the whole partition range, so one per city would cost
    # O(cities²) on a full refresh.
    context.add_asset_metadata({OUTCOME: "refreshed"})
    for city, error in errors.items():
        context.add_asset_metadata({OUTCOME: f"failed at {stage}: {error}"}, partition_key=city)
    for city, earlier_stage in held.items():
        context.add_asset_metadata(
            {OUTCOME: f"not refreshed: failed at {earlier_stage} earlier in this run"},
            partition_key=city)
    rows = [{"city": c, "stage": stage, "error": e} for c, e in sorted(errors.items())]
    rows += [{"city": c, "stage": s, "error": "(see that step)"} for c, s in sorted(held.items())]
    table = pd.DataFrame(rows, columns=["city", "stage", "error"])
    return {
        "cities_refreshed": dg.MetadataValue.int(
            len(context.partition_keys) - len(errors) - len(held)),
        "cities_failed": dg.MetadataValue.int(len(errors) + len(held)),
        "failed_cities": dg.MetadataValue.md(table.head(50).to_markdown(index=False)
                                             if len(table) else "none"),
    }


def column_schema(conn, *tables: tuple[str, str]) -> dict[str, dg.TableSchema]:
    """The `dagster/column_schema` of the warehouse tables an asset writes: the UI lists
    them, and the dbt models' column lineage starts from them."""
    columns = [dg.TableColumn(name, data_type) for name, data_type in table_columns(conn, tables)]
    return {"dagster/column_schema": dg.TableSchema(columns=columns)}
