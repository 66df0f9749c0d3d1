"""Ten-year projections per city (methodology v1.1) and the statewide median they share."""

from pathlib import Path

import dagster as dg
import pandas as pd

from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.resources import SourceFilesResource, WarehouseResource
from refresh_assets.defs.validation import VALIDATED_FISCAL_DATA
from refresh_assets.lib import analytics_store
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.projections import (
    base_years,
    build_history,
    match_calpers,
    project,
    revenue_growth,
    statewide_medians,
)

STATEWIDE_MEDIANS = dg.AssetKey(["analytics", "statewide_growth_medians"])
PROJECTIONS = dg.AssetKey(["analytics", "projections"])


@dg.asset(
    key=STATEWIDE_MEDIANS,
    group_name="projections",
    kinds={"python", "postgres"},
    deps=[VALIDATED_FISCAL_DATA],
    description=(
        "m(t0): the median revenue growth of every city projectable from the same base year. "
        "It needs all cities at once, so the per-city projections read it from here."
    ),
)
def statewide_growth_medians(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.connection() as conn:
        analytics_store.ensure_tables(conn)
        validated = load_validated(conn)
        base = base_years(validated)
        medians = statewide_medians(base, revenue_growth(build_history(validated), base))
        analytics_store.append_medians(conn, context.run.run_id, medians)
    return dg.MaterializeResult(metadata={
        "medians": dg.MetadataValue.md(medians.to_markdown(index=False, floatfmt=".4f")),
    })


@dg.asset(
    key=PROJECTIONS,
    group_name="projections",
    kinds={"python", "postgres"},
    deps=[VALIDATED_FISCAL_DATA, STATEWIDE_MEDIANS],
    partitions_def=city_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "Ten fiscal years in three scenarios with the fiscal-cliff year, reserve-breach year, "
        "severity and gap to close; every row carries its assumptions and methodology v1.1."
    ),
)
def projections(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                source_files: SourceFilesResource):
    cities = list(context.partition_keys)
    calpers = pd.read_csv(Path(source_files.calpers_valuations_csv))
    with warehouse.connection() as conn:
        analytics_store.ensure_tables(conn)
        validated = load_validated(conn, cities)
        medians = analytics_store.latest_medians(conn)
        history = build_history(validated)
        base = base_years(validated)
        match = match_calpers(validated["city"], calpers)
        yearly, summary = project(base, revenue_growth(history, base), medians,
                                  match.schedules, history)
        analytics_store.append_projections(conn, context.run.run_id, yearly, summary)
    headline = summary[summary["scenario"] == "base"]
    if match.unmatched_cities:
        context.log.info("no CalPERS schedule matched (5% pension growth used): "
                         + ", ".join(match.unmatched_cities))
    return dg.MaterializeResult(metadata={
        "cities_projected": len(headline),
        "cities_without_base_year": sorted(set(validated["city"]) - set(headline["city"])),
        "base_scenario_severity": headline["severity"].value_counts().to_dict(),
        "calpers_unmatched_cities": match.unmatched_cities,
    })
