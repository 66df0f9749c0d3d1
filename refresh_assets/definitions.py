"""The code location: assets, checks, jobs, sensors and resources assembled from defs/."""

import dagster as dg

from refresh_assets.defs.alerts import (
    filing_deadlines_job,
    filing_deadlines_schedule,
    no_filing_overdue,
    operator_alerts_sensor,
)
from refresh_assets.defs.dbt import forecast_snapshot_models, warehouse_dbt_models
from refresh_assets.defs.entries import fiscal_entries
from refresh_assets.defs.exports import city_exports, exports_resource
from refresh_assets.defs.jobs import refresh_all_job
from refresh_assets.defs.projections import projections, statewide_growth_medians
from refresh_assets.defs.reports import change_report, refresh_failure_sensor
from refresh_assets.defs.resources import build_resources
from refresh_assets.defs.risk import risk_scores
from refresh_assets.defs.schedules import (
    forecast_aggregates_job,
    forecast_aggregates_schedule,
    forecast_snapshot_job,
    forecast_snapshot_schedule,
)
from refresh_assets.defs.sensors import automation_sensor, entry_files_sensor, refresh_city_job
from refresh_assets.defs.sources import source_documents, source_documents_job, source_documents_sensor
from refresh_assets.defs.validation import validated_fiscal_data

defs = dg.Definitions(
    assets=[fiscal_entries, validated_fiscal_data, risk_scores, statewide_growth_medians,
            projections, change_report, warehouse_dbt_models, forecast_snapshot_models,
            source_documents, city_exports],
    asset_checks=[no_filing_overdue],
    jobs=[refresh_all_job, refresh_city_job, source_documents_job, forecast_aggregates_job,
          forecast_snapshot_job, filing_deadlines_job],
    schedules=[forecast_aggregates_schedule, forecast_snapshot_schedule, filing_deadlines_schedule],
    sensors=[entry_files_sensor, automation_sensor, refresh_failure_sensor, source_documents_sensor,
             operator_alerts_sensor],
    resources={**build_resources(), "exports": exports_resource()},
    # One process per run: the steps are short, and a process per step pays Dagster's and
    # dbt's start-up again (seconds each on a 2-core machine).
    executor=dg.in_process_executor,
)
