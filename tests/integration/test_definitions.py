"""The code location loads, and Python and dbt assets form one lineage graph."""

import dagster as dg
import pytest

pytestmark = pytest.mark.integration

RAW = dg.AssetKey(["raw", "fiscal_entries"])
VALIDATED = dg.AssetKey(["analytics", "validated_fiscal_data"])
STAGING = dg.AssetKey(["staging", "stg_analytics__validated_fiscal_data"])
MART = dg.AssetKey(["marts", "city_fiscal_years"])
CHANGES = dg.AssetKey(["marts", "fiscal_entry_changes"])


@pytest.fixture(scope="module")
def defs(dbt_manifest):
    from refresh_assets.definitions import defs

    return defs


def test_one_lineage_from_python_to_the_marts(defs):
    graph = defs.resolve_asset_graph()
    assert {RAW, VALIDATED, STAGING, MART, CHANGES} <= set(graph.get_all_asset_keys())
    assert graph.get(MART).parent_keys == {STAGING}
    assert graph.get(STAGING).parent_keys == {VALIDATED}
    assert graph.get(VALIDATED).parent_keys == {RAW}
    # ops.validation_results is written by the validation asset: no node of its own.
    issues = graph.get(dg.AssetKey(["staging", "stg_ops__validation_results"]))
    assert issues.parent_keys == {VALIDATED}
    assert graph.get(RAW).group_name == "ingestion"
    assert graph.get(MART).group_name == "marts"
    assert graph.get(RAW).partitions_def == graph.get(VALIDATED).partitions_def


def test_per_city_checks_warn_the_stored_rows_check_blocks_and_dbt_tests_are_checks(defs):
    graph = defs.resolve_asset_graph()
    blocking = {key.name for key in graph.asset_check_keys if graph.get_check_spec(key).blocking}
    # A bad city is held back inside the step: its check must not stop the other 476.
    assert "entry_files_well_formed" not in blocking and "no_validation_errors" not in blocking
    assert "stored_rows_pass_error_rules" in blocking
    on_mart = {key.name for key in graph.asset_check_keys if key.asset_key == MART}
    assert "unique_city_fiscal_years_city_fiscal_year_id" in on_mart
    assert any(name.startswith("relationships_city_fiscal_years_entry_version") for name in on_mart)


def test_scores_projections_and_reports_follow_validation(defs):
    graph = defs.resolve_asset_graph()
    scores, projections = dg.AssetKey(["analytics", "risk_scores"]), dg.AssetKey(
        ["analytics", "projections"])
    medians = dg.AssetKey(["analytics", "statewide_growth_medians"])
    report = dg.AssetKey(["reports", "change_report"])
    assert graph.get(scores).parent_keys == {VALIDATED}
    # The projections step makes the scores current: they are stored before it, on any executor.
    assert graph.get(projections).parent_keys == {VALIDATED, medians, scores}
    assert graph.get(medians).partitions_def is None  # needs every city at once
    assert graph.get(report).parent_keys == {scores, projections}
    forecast = graph.get(dg.AssetKey(["marts", "city_forecast"]))
    # The current run through the pointer table, its rows with their band and summary.
    assert forecast.parent_keys == {dg.AssetKey(["staging", "stg_analytics__current_projections"]),
                                    dg.AssetKey(["intermediate", "int_projection_rows"])}
    # Version 1 keeps the shape BI tools read before the bands, over the same rows.
    assert graph.get(dg.AssetKey(["marts", "city_forecast_v1"])).parent_keys == {forecast.key}


def test_forecast_layer_schedules_snapshots_and_aggregates(defs):
    graph = defs.resolve_asset_graph()
    snapshots = graph.get(dg.AssetKey(["marts", "city_forecast_snapshots"]))
    assert isinstance(snapshots.partitions_def, dg.DailyPartitionsDefinition)
    assert snapshots.automation_condition is None  # taken by the daily schedule
    for name in ("forecast_cliff_aggregates", "forecast_fiscal_year_aggregates",
                 "risk_level_aggregates"):
        aggregate = graph.get(dg.AssetKey(["marts", name]))
        assert aggregate.automation_condition is None  # refreshed by the 30-minute schedule
        # The unique index REFRESH ... CONCURRENTLY needs is tested as a blocking check.
        assert any(check.name.startswith("unique_") and check.asset_key == aggregate.key
                   for check in graph.asset_check_keys)
    for name in ("city_forecast", "city_fiscal_health"):
        assert graph.get(dg.AssetKey(["marts", name])).automation_condition is not None
    aggregates = defs.resolve_schedule_def("forecast_aggregates_schedule")
    assert aggregates.cron_schedule == "*/30 * * * *"
    daily = defs.resolve_schedule_def("forecast_snapshot_schedule")
    assert daily.cron_schedule == "10 3 * * *" and daily.execution_timezone == "UTC"
    for schedule in (aggregates, daily):
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    # The main job leaves the daily partitions to their own job, which rebuilds the backtest
    # over them (on a new warehouse the snapshots table exists only after a first snapshot).
    backtest = dg.AssetKey(["marts", "forecast_backtest"])
    main = defs.resolve_job_def("refresh_all").asset_layer.executable_asset_keys
    assert snapshots.key not in main and backtest not in main
    assert defs.resolve_job_def("forecast_snapshot").asset_layer.executable_asset_keys == {
        snapshots.key, backtest}
    assert graph.get(backtest).automation_condition is None


def test_jobs_and_the_sensors(defs):
    assert {RAW, VALIDATED, MART} <= set(
        defs.resolve_job_def("refresh_all").asset_layer.executable_asset_keys)
    city_job = set(defs.resolve_job_def("refresh_city").asset_layer.executable_asset_keys)
    graph = defs.resolve_asset_graph()
    assert {RAW, VALIDATED, dg.AssetKey(["analytics", "risk_scores"]),
            dg.AssetKey(["reports", "change_report"])} <= city_job
    # No dbt model in a city's run: automation rebuilds them, batched over the cities
    # refreshed since its previous tick, and exports those cities after them.
    assert not any(key.path[0] in ("staging", "intermediate", "marts", "exports")
                   for key in city_job)
    for automated in (MART, dg.AssetKey(["exports", "city_exports"])):
        assert graph.get(automated).automation_condition is not None
    assert defs.resolve_sensor_def("entry_files_sensor").job_name == "refresh_city"
    # The daemon fails a one-city run still going after 15 minutes: its process died.
    for one_city in ("refresh_city", "source_documents"):
        assert defs.resolve_job_def(one_city).tags["dagster/max_runtime"] == "900"
    automation = defs.resolve_sensor_def("marts_automation")
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    failures = defs.resolve_sensor_def("refresh_failure_sensor")
    assert failures.default_status == dg.DefaultSensorStatus.RUNNING
