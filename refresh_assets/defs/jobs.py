"""Jobs: the main job refreshes every asset but the source documents (the source sensor's
work: checking the web and emailing operators is no part of recomputing the data) and the
daily forecast snapshots and the backtest over them (a job of their own, one day per run:
defs/schedules.py). Its steps run where REFRESH_STEP_EXECUTOR says (defs/executors.py: in the
run's process, Kubernetes pods or Celery workers); the other jobs keep the in-process default,
a city's refresh above all, whose latency a hop per step would add to."""

import os

import dagster as dg

from refresh_assets.defs.dbt import BACKTEST_MODEL, forecast_snapshot_models
from refresh_assets.defs.executors import step_executor
from refresh_assets.defs.sources import SOURCE_DOCUMENTS

refresh_all_job = dg.define_asset_job(
    name="refresh_all",
    selection=(dg.AssetSelection.all() - dg.AssetSelection.assets(SOURCE_DOCUMENTS)
               - dg.AssetSelection.assets(forecast_snapshot_models)
               - dg.AssetSelection.assets(dg.AssetKey(["marts", BACKTEST_MODEL]))),
    description="Ingest and validate every city (a partition range) and build every dbt model.",
    config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    executor_def=step_executor(os.environ),
)
