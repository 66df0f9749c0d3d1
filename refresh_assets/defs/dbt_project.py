"""The dbt project as Dagster sees it. Its manifest is prepared by `refresh-assets dbt
prepare` (run by `make demo`, `make ui` and the tests) before Dagster loads, never by
`dbt parse` at import."""

from dagster_dbt import DbtProject

from refresh_assets.settings import DBT_PROJECT_DIR

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)
