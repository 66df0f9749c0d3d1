"""Sensors: new or changed entry files start a refresh of their city alone, and the marts
operators wait for (city_forecast, city_risk_scores, city_fiscal_health: views over each
city's current projection and scores) show the entry as soon as its projection commits.
The automation sensor rebuilds the dbt tables after refreshes, in one run for every city
refreshed since its previous tick, then exports those cities; it runs by default, so nobody
has to toggle Dagster's default automation sensor on."""

from pathlib import Path

import dagster as dg
import psycopg2

from refresh_assets.defs.entries import fiscal_entries
from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.projections import projections, statewide_growth_medians
from refresh_assets.defs.reports import change_report
from refresh_assets.defs.resources import SourceFilesResource, WarehouseResource
from refresh_assets.defs.risk import risk_scores
from refresh_assets.defs.validation import validated_fiscal_data
from refresh_assets.lib.entry_watch import saved_versions, scan_entries
from refresh_assets.lib.fiscal_store import append_entry_versions
from refresh_assets.lib.run_tags import CHANGED_FILES, CITY, ONE_CITY_MAX_RUNTIME, TRIGGER

# The statewide median (all cities, ~0.1 s) is recomputed in every city's run so the
# city's projection always reads a current one.
CITY_ASSETS = dg.AssetSelection.assets(fiscal_entries, validated_fiscal_data, risk_scores,
                                       statewide_growth_medians, projections, change_report)
# A city's run holds no dbt build: a build per city took the pool's one dbt slot for
# 15-80 s, so city runs queued behind each other at about one a minute under load
# (benchmarks/RESULTS.md, soak). The dbt tables and the city's export follow by automation,
# batched over the cities refreshed meanwhile.
refresh_city_job = dg.define_asset_job(
    name="refresh_city",
    selection=CITY_ASSETS,
    description="Ingest, validate, score and project one city, then report its changes; "
                "the dbt tables and its export follow by declarative automation.",
    tags=ONE_CITY_MAX_RUNTIME,
)

# An entry shows in the marts within seconds of being saved: the sensor ticks every 2 s.
# A tick stats the entries folder's files and reads the cursor: 0.1 s for 2,000 files
# (benchmarks/RESULTS.md, entries sensor).
ENTRY_SENSOR_INTERVAL_SECONDS = 2


@dg.sensor(job=refresh_city_job, minimum_interval_seconds=ENTRY_SENSOR_INTERVAL_SECONDS,
           default_status=dg.DefaultSensorStatus.RUNNING)
def entry_files_sensor(context: dg.SensorEvaluationContext, source_files: SourceFilesResource,
                       warehouse: WarehouseResource):
    """Watches the entries folder; one run per city whose files are new or changed. A bad
    file or folder is logged, with what to do, and never stops the other cities' runs.

    The versions it sees are stored at once (raw.fiscal_entries, as the run's ingestion
    stores them: a version already stored is not stored again). The run reads the files
    seconds later: a file saved again meanwhile (two operators within a second) would
    otherwise lose the first version. Validation stays the run's."""
    entries_dir = Path(source_files.entries_dir)
    changes = scan_entries(entries_dir, context.cursor)
    versions = saved_versions(entries_dir, changes)
    if not versions.empty:
        try:
            with warehouse.connection() as conn:
                append_entry_versions(conn, versions)
        except psycopg2.Error as exc:  # the run stores them when the database is back
            context.log.warning(f"entry versions not stored when seen, the run will store "
                                f"them: {str(exc).strip()}")
    for path in changes.deleted:
        context.log.warning(
            f"{path} was deleted; the versions already ingested stay in raw.fiscal_entries"
        )
    for problem in changes.problems:
        context.log.error(str(problem))
    for message in changes.outside_city_folder_messages():
        context.log.error(message)
    known = set(context.instance.get_dynamic_partitions(city_partitions.name))
    new_cities = sorted(set(changes.changed_by_city) - known)
    run_requests = [
        dg.RunRequest(
            partition_key=city,
            run_key=f"{city}:{changes.fingerprint(city)}",
            tags={TRIGGER: "sensor", CITY: city, CHANGED_FILES: ", ".join(sorted(paths))[:1000]},
        )
        for city, paths in sorted(changes.changed_by_city.items())
    ]
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[city_partitions.build_add_request(new_cities)]
        if new_cities else [],
        cursor=changes.cursor,
    )


automation_sensor = dg.AutomationConditionSensorDefinition(
    "marts_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
