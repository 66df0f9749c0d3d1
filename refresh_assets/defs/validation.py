"""Validation: the rules of lib/validation.py over every version of the city's figures."""

import dagster as dg

from refresh_assets.defs.entries import RAW_FISCAL_ENTRIES, problems_table
from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.resources import WarehouseResource
from refresh_assets.lib.fiscal_store import (
    ensure_tables,
    load_entry_versions,
    record_validation_results,
    replace_validated,
)
from refresh_assets.lib.validation import (
    ERROR,
    ValidationPolicy,
    latest_valid_versions,
    newest_versions,
    summarise,
    validate_versions,
)

VALIDATED_FISCAL_DATA = dg.AssetKey(["analytics", "validated_fiscal_data"])
NO_ERRORS = "no_validation_errors"


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
    check_specs=[dg.AssetCheckSpec(NO_ERRORS, asset=VALIDATED_FISCAL_DATA, blocking=True,
                                   description="The newest version of every city-year passes "
                                               "every error rule.")],
    description=(
        "Per city and fiscal year, the newest version of the figures that passed validation. "
        "A newer version with errors is recorded in ops.validation_results and fails the "
        "blocking check; downstream stays on the last valid version."
    ),
)
def validated_fiscal_data(
    context: dg.AssetExecutionContext, config: ValidationConfig, warehouse: WarehouseResource
):
    cities = list(context.partition_keys)
    policy = ValidationPolicy(year_over_year_jump=config.year_over_year_jump)
    with warehouse.connection() as conn:
        ensure_tables(conn)
        versions = load_entry_versions(conn, cities)
        issues = validate_versions(versions, policy)
        valid = latest_valid_versions(versions, issues)
        newest = newest_versions(versions)
        # Keep the issues of what is used now and of anything newer that was refused.
        shown_versions = set(newest["entry_version"]) | set(valid["entry_version"])
        recorded = issues[issues["entry_version"].isin(shown_versions)]
        replace_validated(conn, cities, valid)
        record_validation_results(conn, context.run.run_id, recorded)

    blocking = recorded[(recorded["severity"] == ERROR)
                        & recorded["entry_version"].isin(newest["entry_version"])]
    counts = summarise(recorded)
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(valid),
            "city_years_refused_newest_version": int(
                blocking[["city", "fiscal_year"]].drop_duplicates().shape[0]),
            **{f"{severity}s": n for severity, n in counts.items()},
        }
    )
    yield dg.AssetCheckResult(
        check_name=NO_ERRORS,
        passed=blocking.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "errors": len(blocking),
            "warnings": counts["warning"],
            "details": problems_table(blocking.to_dict("records")),
        },
    )
