"""dbt models as Dagster assets: one translator holds the key and group policy."""

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


class MissingManifestError(RuntimeError):
    pass


class RefreshDbtTranslator(DagsterDbtTranslator):
    """Keys are `[schema, name]`, as the tables are named in the warehouse (`marts/city_fiscal_years`);
    sources keep `[source, table]` so `raw/...` meets the Python asset that writes it.
    Models are grouped by their schema and rebuilt by declarative automation."""

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
        # Rebuild after any upstream update (a city's refresh), but never on data whose
        # blocking checks failed: those stay on the last valid build.
        return dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


if not dbt_project.manifest_path.exists():
    raise MissingManifestError(
        f"{dbt_project.manifest_path} is missing: run `refresh-assets dbt prepare` "
        "(make demo and make ui do it) before loading the definitions"
    )


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=RefreshDbtTranslator(
        # ops.validation_results maps to the asset that writes it, beside another source.
        settings=DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True)
    ),
)
def warehouse_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Builds (runs and tests) the selected dbt models; tests report as asset checks. dbt's
    unit tests check the SQL, not the data: they run in the test suite
    (tests/integration/test_dbt_models.py), not in every refresh."""
    yield from dbt.cli(["build", "--exclude-resource-type", "unit_test"],
                       context=context).stream().fetch_row_counts()
