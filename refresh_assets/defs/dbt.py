"""dbt models as Dagster assets: one translator holds the key, group and automation policy.

Two asset definitions share the project: `warehouse_dbt_models` (every model but the
snapshots) and `forecast_snapshot_models` (marts.city_forecast_snapshots, one Dagster daily
partition per snapshot day, passed to dbt as a var). Every materialization carries its row
count and column schema, and column-level lineage back to the Python assets' tables."""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from refresh_assets.defs.dbt_project import dbt_project
from refresh_assets.settings import load_settings

SNAPSHOT_MODEL = "city_forecast_snapshots"
# Built after each snapshot, in the snapshot's job: the snapshots table it reads exists
# only once a first snapshot was taken.
BACKTEST_MODEL = "forecast_backtest"
# Snapshot days are UTC days; the newest is today's (end_offset=1), so a snapshot can be
# taken by hand before the day is over. The schedule takes the day that just ended.
forecast_snapshot_days = dg.DailyPartitionsDefinition(
    start_date="2026-01-01", timezone="UTC", end_offset=1
)


class MissingManifestError(RuntimeError):
    pass


class RefreshDbtTranslator(DagsterDbtTranslator):
    """Keys are `[schema, name]`, as the tables are named in the warehouse (`marts/city_fiscal_years`);
    sources keep `[source, table]` so `raw/...` meets the Python asset that writes it.
    Models are grouped by their schema. Views and tables are rebuilt by declarative
    automation; the materialized views (aggregates), the daily snapshots and the backtest
    over them by their schedules (defs/schedules.py), so those have no automation
    condition."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            # [source, table], or the key named in the source's `meta.dagster.asset_key`.
            return super().get_asset_key(dbt_resource_props)
        name = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        return dg.AssetKey([dbt_resource_props["schema"], name])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return dbt_resource_props.get("schema")

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        scheduled = (dbt_resource_props.get("config", {}).get("materialized") == "materialized_view"
                     or dbt_resource_props["name"] in (SNAPSHOT_MODEL, BACKTEST_MODEL))
        if scheduled:
            return None
        # Rebuild after any upstream update (a city's refresh), but never on data whose
        # blocking checks failed: those stay on the last valid build.
        return dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


if not dbt_project.manifest_path.exists():
    raise MissingManifestError(
        f"{dbt_project.manifest_path} is missing: run `refresh-assets dbt prepare` "
        "(make demo and make ui do it) before loading the definitions"
    )


translator = RefreshDbtTranslator(
    # ops.validation_results maps to the asset that writes it, beside another source.
    settings=DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True)
)
# Every run that builds the warehouse models (the main job, automation) takes this pool's
# one slot (dagster.yaml: concurrency.pools.default_limit): two dbt builds
# of the same table at once collide on dbt's `__dbt_tmp`/`__dbt_backup` relations.
WAREHOUSE_DBT_POOL = "warehouse_dbt"

# dbt's unit tests check the SQL, not the data: they run in the test suite
# (tests/integration/test_dbt_models.py), not in every refresh.
BUILD = ["build", "--exclude-resource-type", "unit_test"]


def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str]):
    """Runs and tests the selected models; tests report as asset checks, and each model's
    materialization carries its row count, column schema and column lineage."""
    yield from (dbt.cli(args, context=context).stream().fetch_row_counts()
                .fetch_column_metadata(with_column_lineage=True))


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    exclude=SNAPSHOT_MODEL,
    dagster_dbt_translator=translator,
    pool=WAREHOUSE_DBT_POOL,
    # In the main job, before the change reports when both are ready: the marts are what
    # people wait for.
    op_tags={"dagster/priority": "1"},
)
def warehouse_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Builds the selected dbt models (every model but the daily snapshots)."""
    yield from _build(context, dbt, BUILD)


# What the automation sensor's builds select after refreshes: the models with an automation
# condition (the aggregates, snapshots and backtest run on their schedules).
AUTOMATED_MODELS = [spec.key for spec in warehouse_dbt_models.specs
                    if spec.automation_condition is not None]


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    select=SNAPSHOT_MODEL,
    name="forecast_snapshot_models",
    partitions_def=forecast_snapshot_days,
    dagster_dbt_translator=translator,
)
def forecast_snapshot_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Takes the partition's snapshot of marts.city_forecast (replacing that day's rows),
    then deletes the days older than FORECAST_SNAPSHOT_RETENTION_DAYS (the model's post-hook)."""
    snapshot_vars = {"snapshot_date": context.partition_key,
                     "snapshot_retention_days": load_settings().snapshot_retention_days}
    yield from _build(context, dbt, [*BUILD, "--vars", json.dumps(snapshot_vars)])
