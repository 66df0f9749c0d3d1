"""The forecast layer's schedules evaluated as the daemon would: the project's definitions,
a real (throwaway) Dagster instance, materializations recorded in its event log."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from refresh_assets.settings import PROJECT_DIR

pytestmark = pytest.mark.integration

PROJECTIONS = dg.AssetKey(["analytics", "projections"])
RISK_SCORES = dg.AssetKey(["analytics", "risk_scores"])
AGGREGATES = [dg.AssetKey(["marts", name]) for name in (
    "forecast_cliff_aggregates", "forecast_fiscal_year_aggregates", "risk_level_aggregates")]
TICK = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def defs(dbt_manifest):
    from refresh_assets.definitions import defs

    return defs


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def materialize(instance, key, partition=None):
    """Records a materialization of `key` now, later than every one recorded before it."""
    time.sleep(0.01)  # event timestamps are the storage's clock: keep them strictly ordered
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def evaluate(defs, instance, name, scheduled_at=TICK):
    schedule = defs.resolve_schedule_def(name)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=scheduled_at,
                                        repository_def=defs.get_repository_def())
    return schedule.evaluate_tick(context)


def test_the_aggregates_schedule_refreshes_only_after_an_upstream_change(defs, instance):
    name = "forecast_aggregates_schedule"
    # A new instance: nothing upstream exists yet, so there is nothing to aggregate.
    first = evaluate(defs, instance, name)
    assert first.run_requests == []
    assert first.skip_message == "nothing upstream of the aggregates has been materialized yet"

    # One city's projection (a partition of a partitioned asset): the aggregates, never
    # built, are refreshed.
    materialize(instance, PROJECTIONS, partition="vallejo")
    built = evaluate(defs, instance, name)
    assert built.skip_message is None
    [request] = built.run_requests
    assert defs.resolve_schedule_def(name).job_name == "refresh_forecast_aggregates"
    assert request.tags["refresh_assets/why"] == "the aggregates have never been built"
    assert request.tags["dagster/schedule_name"] == name
    # No run key: while a refresh of the aggregates is under way the schedule waits for it;
    # once it is over (a failure included), the next tick asks again.
    assert request.run_key is None
    run = dg.DagsterRun(job_name="refresh_forecast_aggregates", run_id="aggregates-in-flight",
                        status=dg.DagsterRunStatus.STARTED)
    instance.add_run(run)
    waiting = evaluate(defs, instance, name)
    assert waiting.run_requests == []
    assert waiting.skip_message == (
        "a refresh of the aggregates is under way (run aggregates-in-flight)")
    instance.handle_run_event(run.run_id, dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.RUN_FAILURE.value, job_name=run.job_name,
        message="failed"))
    assert len(evaluate(defs, instance, name).run_requests) == 1

    # Two of the three aggregates refreshed: the oldest (never built) still decides.
    for key in AGGREGATES[:2]:
        materialize(instance, key)
    partial = evaluate(defs, instance, name)
    assert [r.tags["refresh_assets/why"] for r in partial.run_requests] == [
        "the aggregates have never been built"]

    # Every aggregate refreshed after the upstream change: nothing to do.
    materialize(instance, AGGREGATES[2])
    fresh = evaluate(defs, instance, name)
    assert fresh.run_requests == []
    assert fresh.skip_message.startswith("nothing upstream changed since the aggregates' refresh at ")

    # A later projection: refreshed again.
    materialize(instance, PROJECTIONS, partition="fresno")
    again = evaluate(defs, instance, name)
    [second] = again.run_requests
    assert second.tags["refresh_assets/why"].startswith("upstream changed at ")

    # Refreshed once more; then an upstream asset of another aggregate (the scores that
    # risk_level_aggregates reads) triggers it too.
    for key in AGGREGATES:
        materialize(instance, key)
    assert evaluate(defs, instance, name).run_requests == []
    materialize(instance, RISK_SCORES, partition="vallejo")
    assert len(evaluate(defs, instance, name).run_requests) == 1


def test_one_aggregate_older_than_the_latest_change_is_enough_to_refresh(defs, instance):
    materialize(instance, PROJECTIONS, partition="vallejo")
    materialize(instance, AGGREGATES[0])
    materialize(instance, PROJECTIONS, partition="fresno")
    # The other two were refreshed after the change (a run of only those, say): the first
    # still shows rows from before it.
    for key in AGGREGATES[1:]:
        materialize(instance, key)
    [request] = evaluate(defs, instance, "forecast_aggregates_schedule").run_requests
    assert request.tags["refresh_assets/why"].startswith("upstream changed at ")


def test_the_aggregates_own_materializations_never_count_as_an_upstream_change(defs, instance):
    materialize(instance, PROJECTIONS, partition="vallejo")
    for key in AGGREGATES:
        materialize(instance, key)
    # One aggregate refreshed again later (by hand, say): it is not upstream of itself.
    materialize(instance, AGGREGATES[1])
    assert evaluate(defs, instance, "forecast_aggregates_schedule").run_requests == []


@pytest.mark.parametrize("scheduled_at", [
    datetime(2026, 11, 24, 3, 10, tzinfo=UTC),
    # The same instant seen from California: the UTC day decides.
    datetime(2026, 11, 23, 19, 10, tzinfo=ZoneInfo("America/Los_Angeles")),
])
def test_the_snapshot_schedule_takes_the_day_that_just_ended(defs, instance, scheduled_at):
    name = "forecast_snapshot_schedule"
    result = evaluate(defs, instance, name, scheduled_at)
    [request] = result.run_requests
    assert request.partition_key == "2026-11-23"
    assert request.tags["dagster/partition"] == "2026-11-23"
    assert request.run_key == "forecast-snapshot-2026-11-23"
    # Evaluated again (a daemon restart, a retried tick): the same run key, so one run.
    assert evaluate(defs, instance, name, scheduled_at).run_requests[0].run_key == request.run_key
    # The partition is one the snapshot job knows.
    job = defs.resolve_job_def("forecast_snapshot")
    assert request.partition_key in job.partitions_def.get_partition_keys(
        current_time=datetime(2026, 11, 24, 3, 10, tzinfo=UTC))


def test_the_snapshot_schedule_never_skips_and_the_next_tick_takes_the_next_day(defs, instance):
    days = [evaluate(defs, instance, "forecast_snapshot_schedule",
                     datetime(2026, 11, day, 3, 10, tzinfo=UTC)).run_requests[0].partition_key
            for day in (24, 25, 26)]
    assert days == ["2026-11-23", "2026-11-24", "2026-11-25"]


def _snapshot_cron(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Loads the schedules in a fresh interpreter (the cron is read at import)."""
    code = ("from refresh_assets.defs.schedules import forecast_snapshot_schedule as s; "
            "print(s.cron_schedule)")
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR,
                          env={**os.environ, **extra_env}, capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_snapshot_time_comes_from_the_settings(dbt_manifest):
    moved = _snapshot_cron({"FORECAST_SNAPSHOT_CRON_HOUR_UTC": "5",
                            "FORECAST_SNAPSHOT_CRON_MINUTE_UTC": "45"})
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() == "45 5 * * *"
    bad = _snapshot_cron({"FORECAST_SNAPSHOT_CRON_HOUR_UTC": "25"})
    assert bad.returncode != 0
    assert "FORECAST_SNAPSHOT_CRON_HOUR_UTC must be between 0 and 23, got 25" in bad.stderr
