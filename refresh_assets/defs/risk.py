"""Fiscal-health scores per city, from validated data (the State Auditor's method)."""

import dagster as dg

from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.resources import WarehouseResource
from refresh_assets.defs.validation import VALIDATED_FISCAL_DATA
from refresh_assets.lib import analytics_store
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.scoring import METHODOLOGY_VERSION, score

RISK_SCORES = dg.AssetKey(["analytics", "risk_scores"])


@dg.asset(
    key=RISK_SCORES,
    group_name="scores",
    kinds={"python", "postgres"},
    deps=[VALIDATED_FISCAL_DATA],
    partitions_def=city_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "The State Auditor's ten indicators (ratio, points, band) and overall score for every "
        "validated city-year, appended as a new set per scoring to analytics.risk_scores."
    ),
)
def risk_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    cities = list(context.partition_keys)
    with warehouse.connection() as conn:
        analytics_store.ensure_tables(conn)
        validated = load_validated(conn, cities)
        scores = score(validated).assign(entry_version=validated["entry_version"].values,
                                         methodology_version=METHODOLOGY_VERSION)
        analytics_store.append_scores(conn, context.run.run_id, scores)
    latest = scores.sort_values("fiscal_year").drop_duplicates("city", keep="last")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(scores),
        "methodology_version": METHODOLOGY_VERSION,
        "latest_year_levels": latest["overall_risk"].value_counts().to_dict(),
    })
