"""Ingestion: entry files and the bulk data set, appended to `raw.fiscal_entries` per city;
CalPERS valuation files, appended to `raw.calpers_valuation_entries`."""

from pathlib import Path

import dagster as dg
import pandas as pd

from refresh_assets.defs.outcomes import column_schema, describe_cities, record_failures
from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.resources import CityLocksResource, SourceFilesResource, WarehouseResource
from refresh_assets.lib.cities import city_key
from refresh_assets.lib.entries import check_entry_files, entries_to_frame, find_entry_files
from refresh_assets.lib.fiscal_inputs import (
    FiscalInputsError,
    bulk_rows_as_versions,
    read_fiscal_inputs_csv,
)
from refresh_assets.lib.fiscal_store import (
    append_entry_versions,
    form_problems_as_issues,
    record_issues,
)
from refresh_assets.lib.validation import ERROR, first_error_per_city
from refresh_assets.lib.valuation_entries import (
    check_valuation_files,
    find_valuation_files,
    valuations_to_frame,
)
from refresh_assets.lib.valuation_store import append_valuation_versions

RAW_FISCAL_ENTRIES = dg.AssetKey(["raw", "fiscal_entries"])
WELL_FORMED = "entry_files_well_formed"


def problems_table(rows: list[dict], limit: int = 50) -> dg.MarkdownMetadataValue:
    if not rows:
        return dg.MetadataValue.md("none")
    frame = pd.DataFrame(rows).head(limit)
    more = f"\n\n... and {len(rows) - limit} more" if len(rows) > limit else ""
    return dg.MetadataValue.md(frame.to_markdown(index=False) + more)


@dg.asset(
    key=RAW_FISCAL_ENTRIES,
    group_name="ingestion",
    kinds={"python", "postgres"},
    partitions_def=city_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec(
        WELL_FORMED, asset=RAW_FISCAL_ENTRIES, blocking=False,
        description="Every entry file (and CalPERS valuation file) parses, is where it says "
                    "it is, and a valuation file passes its value rules. A city with a refused "
                    "file is not refreshed (it keeps its last valid results); the other cities "
                    "go on.")],
    description=(
        "Every version of every figure: the city's entry files and its rows of the published "
        "data set, appended (never updated) to raw.fiscal_entries; its CalPERS valuation files, "
        "to raw.calpers_valuation_entries. An unchanged submission adds nothing; a malformed "
        "file (or a valuation file breaking an error rule) adds nothing and holds its city back."
    ),
)
def fiscal_entries(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    source_files: SourceFilesResource,
    city_locks: CityLocksResource,  # held for the whole run: one refresh per city
):
    cities = list(context.partition_keys)
    bulk_path = Path(source_files.bulk_import_csv)
    try:
        bulk = read_fiscal_inputs_csv(bulk_path)
    except FiscalInputsError as exc:
        # The published file serves every city: without it no city can be refreshed. A
        # Failure shows its message in the UI as is, without a stack trace to dig through.
        raise dg.Failure(description=str(exc), metadata={"file": str(bulk_path)}) from exc
    bulk = bulk_rows_as_versions(bulk[bulk["city"].map(city_key).isin(cities)], bulk_path.name)

    entries_dir = Path(source_files.entries_dir)
    paths = [p for city in cities for p in find_entry_files(entries_dir / city)]
    parsed, problems = check_entry_files(paths, entries_dir)
    incoming = pd.concat([bulk, entries_to_frame(parsed)], ignore_index=True)
    # Valuation files get their value rules here (their warnings are recorded too): the
    # accepted ones are appended, a refused one holds its city like a malformed entry file.
    valuation_paths = [p for city in cities for p in find_valuation_files(entries_dir / city)]
    valuations, valuation_problems = check_valuation_files(valuation_paths, entries_dir)
    problems = [*problems, *valuation_problems]
    issues = form_problems_as_issues(problems)
    errors = first_error_per_city(issues, key="city_key")

    with warehouse.connection() as conn:
        added = append_entry_versions(conn, incoming)
        added_valuations = append_valuation_versions(conn, context.run.run_id,
                                                     valuations_to_frame(valuations))
        record_issues(conn, context.run.run_id, issues)
        record_failures(context, conn, "ingestion", errors)
        columns = column_schema(conn, ("raw", "fiscal_entries"))

    yield dg.MaterializeResult(
        metadata={
            **describe_cities(context, "ingestion", errors, {}),
            **columns,
            "versions_added": len(added),
            "versions_added_by_source": added["source_kind"].value_counts().to_dict(),
            "entry_files_read": len(paths),
            "valuation_files_read": len(valuation_paths),
            "valuation_versions_added": len(added_valuations),
            "entry_files_rejected": len({p.file for p in problems if p.severity == ERROR}),
        }
    )
    yield dg.AssetCheckResult(
        check_name=WELL_FORMED,
        passed=not errors,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{len(errors)} city(ies) held back by a malformed entry file or a "
                     "refused valuation file" if errors else "every entry file is well formed"),
        metadata={
            "cities_held": sorted(errors),
            "problems": len(problems),
            "details": problems_table([p.__dict__ for p in problems]),
        },
    )
