"""Jobs: the main job refreshes every asset."""

import dagster as dg

refresh_all_job = dg.define_asset_job(
    name="refresh_all",
    selection=dg.AssetSelection.all(),
    description="Ingest and validate every city (a partition range) and build every dbt model.",
    config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
)
