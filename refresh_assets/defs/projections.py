"""Ten-year projections per city (methodology v1.2) and the statewide priors they share."""

from pathlib import Path

import dagster as dg
import pandas as pd

from refresh_assets.defs.outcomes import column_schema, describe_cities, held_cities, record_failures
from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.resources import CityLocksResource, SourceFilesResource, WarehouseResource
from refresh_assets.defs.risk import RISK_SCORES
from refresh_assets.defs.validation import VALIDATED_FISCAL_DATA
from refresh_assets.lib import analytics_store
from refresh_assets.lib.cities import city_key
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.projections import (
    METHODOLOGY_VERSION,
    IncoherentScenarios,
    project_cities,
    statewide_priors,
)
from refresh_assets.lib.valuation_store import load_current_valuations

STATEWIDE_MEDIANS = dg.AssetKey(["analytics", "statewide_growth_medians"])
PROJECTIONS = dg.AssetKey(["analytics", "projections"])


@dg.asset(
    key=STATEWIDE_MEDIANS,
    group_name="projections",
    kinds={"python", "postgres"},
    deps=[VALIDATED_FISCAL_DATA],
    description=(
        "The statewide priors of the projections: m(t0), the median revenue growth of every "
        "city projectable from the same base year, and the statewide variances of yearly "
        "changes that v1.2's bands shrink each city's own toward. They need all cities at "
        "once, so the per-city projections read them from here."
    ),
)
def statewide_growth_medians(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                             source_files: SourceFilesResource):
    calpers = pd.read_csv(Path(source_files.calpers_valuations_csv))
    with warehouse.connection() as conn:
        validated = load_validated(conn)
        valuations = load_current_valuations(conn, sorted(set(validated["city"].map(city_key))))
        priors = statewide_priors(validated, calpers, valuations)
        analytics_store.append_priors(conn, context.run.run_id, priors)
    return dg.MaterializeResult(metadata={
        "priors": dg.MetadataValue.md(priors.to_markdown(index=False, floatfmt=".4f")),
    })


@dg.asset(
    key=PROJECTIONS,
    group_name="projections",
    kinds={"python", "postgres"},
    # After the scores too: the step makes the run's scores current with its projection, so
    # on an executor that runs steps in parallel (Celery, Kubernetes) they must be stored.
    deps=[VALIDATED_FISCAL_DATA, STATEWIDE_MEDIANS, RISK_SCORES],
    partitions_def=city_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec(
        "scenarios_are_coherent", asset=PROJECTIONS, blocking=False,
        description="Every projected city's scenarios are in order in every year: pessimistic "
                    "<= base <= optimistic for revenues and fund balance, the reverse for "
                    "expenditures. A city out of order is not stored (it keeps its last "
                    "projection) and is recorded as failed at the projection stage.")],
    description=(
        "Ten fiscal years in three scenarios with the fiscal-cliff year, reserve-breach year, "
        "severity and gap to close; every row carries its assumptions and methodology "
        f"{METHODOLOGY_VERSION}: the optimistic and pessimistic scenarios are each measure's "
        "10th and 90th percentiles. "
        "The pension growth follows the city's newest CalPERS valuation entry, else the 2016 "
        "bulk schedule, else 5% a year. "
        "Appended when a city's projection changed; a city whose projection fails keeps its "
        "last one."
    ),
)
def projections(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                source_files: SourceFilesResource,
                city_locks: CityLocksResource):  # held for the whole run: one refresh per city
    cities = list(context.partition_keys)
    calpers = pd.read_csv(Path(source_files.calpers_valuations_csv))
    with warehouse.connection() as conn:
        held = held_cities(context, conn)
        validated = load_validated(conn, [c for c in cities if c not in held])
        # A city's newest valuation entry, where it has one, replaces the 2016 bulk schedule.
        valuations = load_current_valuations(conn, [c for c in cities if c not in held])
        projected = project_cities(validated, analytics_store.latest_priors(conn), calpers,
                                   valuations)
        changed = analytics_store.append_changed_projections(
            conn, context.run.run_id, projected.yearly, projected.summary)
        # The city's new scores become current with its projection (one transaction).
        failed = {city_key(city) for city in projected.errors}
        analytics_store.advance_current_scores(
            conn, [c for c in cities if c not in held and c not in failed])
        record_failures(context, conn, "projection", projected.errors)
        columns = column_schema(conn, ("analytics", "projection_years"),
                                ("analytics", "projection_summaries"),
                                ("analytics", "current_projections"))
    summary = projected.summary
    headline = summary[summary["scenario"] == "base"] if len(summary) else None
    incoherent = {city: error for city, error in projected.errors.items()
                  if error.startswith(IncoherentScenarios.__name__)}
    if projected.calpers_unmatched:
        context.log.info("no CalPERS schedule matched (5% pension growth used): "
                         + ", ".join(projected.calpers_unmatched))
    return dg.MaterializeResult(metadata={
        **describe_cities(context, "projection", projected.errors, held),
        **columns,
        "methodology_version": METHODOLOGY_VERSION,
        "cities_projected": 0 if headline is None else len(headline),
        "cities_with_new_projections": len(changed),
        # Counts and a few names: a range run copies this metadata onto every city's
        # materialization, so a list of every city would cost O(cities²).
        "cities_without_base_year": _few(
            set(validated["city"]) - (set() if headline is None else set(headline["city"]))),
        "base_scenario_severity": {} if headline is None
        else headline["severity"].value_counts().to_dict(),
        "calpers_unmatched_cities": _few(projected.calpers_unmatched),
        "pension_schedule_sources": {} if headline is None
        else headline["pension_schedule_source"].value_counts().to_dict(),
    }, check_results=[dg.AssetCheckResult(
        check_name="scenarios_are_coherent", passed=not incoherent,
        severity=dg.AssetCheckSeverity.WARN,  # those cities are held back, the others go on
        metadata={"cities_checked": (0 if headline is None else len(headline)) + len(incoherent),
                  "incoherent_cities": _few(incoherent),
                  "first_incoherence": next(iter(incoherent.values()), "none")},
    )])


def _few(cities, shown: int = 20) -> str:
    names = sorted(cities)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)}: {', '.join(names[:shown])}{more}" if names else "none"
