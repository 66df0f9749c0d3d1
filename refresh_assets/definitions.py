"""The code location: assets, checks, jobs and resources assembled from defs/."""

import dagster as dg

from refresh_assets.defs.dbt import warehouse_dbt_models
from refresh_assets.defs.fiscal import state_auditor_fiscal_inputs
from refresh_assets.defs.jobs import refresh_all_job
from refresh_assets.defs.resources import build_resources

defs = dg.Definitions(
    assets=[state_auditor_fiscal_inputs, warehouse_dbt_models],
    jobs=[refresh_all_job],
    resources=build_resources(),
)
