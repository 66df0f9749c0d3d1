"""Validation: the rules of lib/validation.py over every version of the city's figures."""

import dagster as dg

from refresh_assets.defs.entries import RAW_FISCAL_ENTRIES, problems_table
from refresh_assets.defs.outcomes import column_schema, describe_cities, held_cities, record_failures
from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.resources import CityLocksResource, WarehouseResource
from refresh_assets.lib.cities import city_key
from refresh_assets.lib.fiscal_store import (
    load_entry_versions,
    load_validated,
    record_city_validations,
    record_issues,
    replace_validated,
)
from refresh_assets.lib.sources.store import complete_entered
from refresh_assets.lib.validation import (
    ERROR,
    ValidationPolicy,
    first_error_per_city,
    summarise,
    validate_cities,
    validate_versions,
)

VALIDATED_FISCAL_DATA = dg.AssetKey(["analytics", "validated_fiscal_data"])
NO_ERRORS = "no_validation_errors"
STORED_ROWS_VALID = "stored_rows_pass_error_rules"


class ValidationConfig(dg.Config):
    year_over_year_jump: float = 0.5
    """Warn when a figure moves by more than this share from the year before."""


@dg.asset(
    key=VALIDATED_FISCAL_DATA,
    group_name="validation",
    kinds={"python", "postgres"},
    deps=[RAW_FISCAL_ENTRIES],
    partitions_def=city_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        dg.AssetCheckSpec(
            NO_ERRORS, asset=VALIDATED_FISCAL_DATA, blocking=False,
            description="The current version of every city-year passes every error rule. A "
                        "city whose current version fails is held back (it keeps its last "
                        "valid results); the other cities go on."),
        dg.AssetCheckSpec(
            STORED_ROWS_VALID, asset=VALIDATED_FISCAL_DATA, blocking=True,
            description="Read back from the warehouse, no stored validated row breaks an "
                        "error rule: nothing invalid can reach scores, projections or marts."),
    ],
    description=(
        "Per city and fiscal year, the version of the figures that counts (an operator's "
        "entry outranks the bulk import; then the later ingest) among those that passed "
        "validation. Every issue is recorded in ops.validation_results; a city whose current "
        "version is refused is held back and named in the check and in ops.refresh_operations."
    ),
)
def validated_fiscal_data(
    context: dg.AssetExecutionContext, config: ValidationConfig, warehouse: WarehouseResource,
    city_locks: CityLocksResource,  # held for the whole run: one refresh per city
):
    cities = list(context.partition_keys)
    policy = ValidationPolicy(year_over_year_jump=config.year_over_year_jump)
    with warehouse.connection() as conn:
        held = held_cities(context, conn)
        outcome = validate_cities(load_entry_versions(conn, cities), policy)
        refused = outcome.refused.assign(city_key=outcome.refused["city"].map(city_key))
        errors = {k: v for k, v in first_error_per_city(refused, key="city_key").items()
                  if k not in held}
        replace_validated(conn, cities, outcome.valid)
        record_issues(conn, context.run.run_id, outcome.recorded)
        record_city_validations(conn, context.run.run_id, cities)
        record_failures(context, conn, "validation", errors)
        # An operator's entry that validates completes the notification that asked for it.
        completed = complete_entered(conn, cities, context.run.run_id)
        # Read back what downstream will read, and check it independently of the choice above.
        stored = load_validated(conn, cities)
        columns = column_schema(conn, ("analytics", "validated_fiscal_data"))
    stored_errors = validate_versions(stored, policy)
    stored_errors = stored_errors[stored_errors["severity"] == ERROR]

    counts = summarise(outcome.recorded)
    yield dg.MaterializeResult(
        metadata={
            **describe_cities(context, "validation", errors, held),
            **columns,
            "dagster/row_count": len(outcome.valid),
            **{f"{severity}s": n for severity, n in counts.items()},
            "notifications_completed": len(completed),
        }
    )
    yield dg.AssetCheckResult(
        check_name=NO_ERRORS,
        passed=refused.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{len(set(refused['city_key']))} city(ies) held back: their current "
                     "version breaks an error rule" if len(refused) else "no error"),
        metadata={
            "cities_held": sorted(set(refused["city_key"])),
            "errors": len(refused),
            "warnings": counts["warning"],
            "details": problems_table(refused.drop(columns="city_key").to_dict("records")),
        },
    )
    yield dg.AssetCheckResult(
        check_name=STORED_ROWS_VALID,
        passed=stored_errors.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows_checked": len(stored), "errors": len(stored_errors),
                  "details": problems_table(stored_errors.to_dict("records"))},
    )
