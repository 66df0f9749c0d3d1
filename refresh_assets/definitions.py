"""The code location: assets, checks, jobs, sensors and resources assembled from defs/."""

import dagster as dg

from refresh_assets.defs.dbt import warehouse_dbt_models
from refresh_assets.defs.entries import fiscal_entries
from refresh_assets.defs.jobs import refresh_all_job
from refresh_assets.defs.resources import build_resources
from refresh_assets.defs.sensors import automation_sensor, entry_files_sensor, refresh_city_job
from refresh_assets.defs.validation import validated_fiscal_data

defs = dg.Definitions(
    assets=[fiscal_entries, validated_fiscal_data, warehouse_dbt_models],
    jobs=[refresh_all_job, refresh_city_job],
    sensors=[entry_files_sensor, automation_sensor],
    resources=build_resources(),
)
