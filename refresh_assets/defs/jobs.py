"""Jobs: the main job refreshes every asset."""

import dagster as dg

refresh_all_job = dg.define_asset_job(
    name="refresh_all",
    selection=dg.AssetSelection.all(),
    description="Ingest and validate every city (a partition range) and build every dbt model.",
    # One process: the graph is small, and each extra step process pays Dagster's and
    # dbt's start-up again (seconds on this 2-core machine).
    executor_def=dg.in_process_executor,
    config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
)
