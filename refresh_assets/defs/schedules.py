"""Schedules of the forecast layer: the aggregates every 30 minutes when something they read
changed, and the daily forecast snapshot (with its retention) at 03:10 UTC by default."""

import dagster as dg

from refresh_assets.defs.dbt import BACKTEST_MODEL, SNAPSHOT_MODEL, forecast_snapshot_models
from refresh_assets.lib.schedule_decisions import aggregates_refresh, snapshot_day
from refresh_assets.settings import load_settings

# The PostgreSQL materialized views (dbt `materialized_view`), refreshed CONCURRENTLY.
AGGREGATES = [dg.AssetKey(["marts", name]) for name in (
    "forecast_cliff_aggregates", "forecast_fiscal_year_aggregates", "risk_level_aggregates")]

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
             dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]

forecast_aggregates_job = dg.define_asset_job(
    name="refresh_forecast_aggregates",
    selection=dg.AssetSelection.assets(*AGGREGATES),
    description="Refresh the aggregate materialized views (concurrently: readers never wait).",
)

BACKTEST = dg.AssetKey(["marts", BACKTEST_MODEL])

forecast_snapshot_job = dg.define_asset_job(
    name="forecast_snapshot",
    selection=dg.AssetSelection.assets(forecast_snapshot_models, BACKTEST),
    partitions_def=forecast_snapshot_models.partitions_def,
    description=f"Snapshot marts.city_forecast into marts.{SNAPSHOT_MODEL} for one day, "
                "delete the days older than FORECAST_SNAPSHOT_RETENTION_DAYS, then rebuild "
                f"marts.{BACKTEST_MODEL} over the days kept.",
)


def _latest_materialization(instance: dg.DagsterInstance, keys) -> dict[dg.AssetKey, float]:
    """Each key's latest materialization time (any partition); keys never materialized are
    left out."""
    times = {}
    for record in instance.get_asset_records(list(keys)):
        event = record.asset_entry.last_materialization
        if event is not None:
            times[record.asset_entry.asset_key] = event.timestamp
    return times


@dg.schedule(
    job=forecast_aggregates_job,
    cron_schedule="*/30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def forecast_aggregates_schedule(context: dg.ScheduleEvaluationContext):
    """Every 30 minutes: refresh the aggregates if any asset upstream of them (a city's scores
    or projection, a dbt model they read) was materialized since their last refresh."""
    graph = context.repository_def.asset_graph
    upstream = dg.AssetSelection.assets(*AGGREGATES).upstream().resolve(graph) - set(AGGREGATES)
    inputs = _latest_materialization(context.instance, upstream)
    refreshed = _latest_materialization(context.instance, AGGREGATES)
    last_input_change = max(inputs.values(), default=None)
    # The oldest aggregate decides: one never built (or older) needs the refresh.
    last_refresh = min(refreshed.values()) if len(refreshed) == len(AGGREGATES) else None
    decision = aggregates_refresh(last_input_change, last_refresh)
    if not decision.run:
        return dg.SkipReason(decision.reason)
    in_flight = context.instance.get_run_records(
        dg.RunsFilter(job_name=forecast_aggregates_job.name, statuses=IN_FLIGHT), limit=1)
    if in_flight:
        return dg.SkipReason(f"a refresh of the aggregates is under way "
                             f"(run {in_flight[0].dagster_run.run_id})")
    # No run key: a refresh that failed is asked for again at the next tick.
    return dg.RunRequest(tags={"refresh_assets/why": decision.reason})


def _snapshot_cron() -> str:
    # A schedule's cron is part of its definition, so it is read when the code location
    # loads (a new value needs a reload); a bad value stops the load with its SettingsError.
    settings = load_settings()
    return f"{settings.snapshot_minute_utc} {settings.snapshot_hour_utc} * * *"


@dg.schedule(
    job=forecast_snapshot_job,
    cron_schedule=_snapshot_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def forecast_snapshot_schedule(context: dg.ScheduleEvaluationContext):
    """Daily (FORECAST_SNAPSHOT_CRON_HOUR_UTC:FORECAST_SNAPSHOT_CRON_MINUTE_UTC, 03:10 by
    default): snapshot the day that just ended; retention runs right after, in the same step."""
    day = snapshot_day(context.scheduled_execution_time).isoformat()
    return dg.RunRequest(partition_key=day, run_key=f"forecast-snapshot-{day}")
