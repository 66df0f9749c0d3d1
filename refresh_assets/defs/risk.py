"""Fiscal-health scores per city, from validated data (the State Auditor's method)."""

import dagster as dg

from refresh_assets.defs.outcomes import column_schema, describe_cities, held_cities, record_failures
from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.resources import CityLocksResource, WarehouseResource
from refresh_assets.defs.validation import VALIDATED_FISCAL_DATA
from refresh_assets.lib import analytics_store
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.scoring import METHODOLOGY_VERSION, score_cities

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
        "validated city-year. A city's scores are appended to analytics.risk_scores as a new "
        "set when they changed; a city whose scoring fails keeps its last scores."
    ),
)
def risk_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                city_locks: CityLocksResource):  # held for the whole run: one refresh per city
    cities = list(context.partition_keys)
    with warehouse.connection() as conn:
        held = held_cities(context, conn)
        validated = load_validated(conn, [c for c in cities if c not in held])
        scored = score_cities(validated)
        changed = analytics_store.append_changed_scores(conn, context.run.run_id, scored.scores)
        record_failures(context, conn, "scoring", scored.errors)
        columns = column_schema(conn, ("analytics", "risk_scores"))
    scores = scored.scores
    latest = scores.sort_values("fiscal_year").drop_duplicates("city", keep="last")
    return dg.MaterializeResult(metadata={
        **describe_cities(context, "scoring", scored.errors, held),
        **columns,
        "cities_with_new_scores": len(changed),
        "dagster/row_count": len(scores),
        "methodology_version": METHODOLOGY_VERSION,
        "latest_year_levels": latest["overall_risk"].value_counts().to_dict(),
    })
