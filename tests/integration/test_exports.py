"""Per-city exports on the real test server: each file compared row by row with the mart it
came from (CSV and Parquet), Parquet's column types, a city whose latest refresh failed
exporting its last valid data, `refresh-assets export` end to end with its errors, the
asset exports/city_exports materialized through Dagster for two cities, and its automation
condition."""

import csv
import hashlib
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from refresh_assets.lib import analytics_store, refresh_outcomes
from refresh_assets.lib.cities import CITY_LIST
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.exports import (
    DATASETS,
    MARTS,
    ExportError,
    city_catalog,
    read_marts,
    resolve_cities,
    write_exports,
)
from refresh_assets.lib.fiscal_inputs import read_fiscal_inputs_csv
from refresh_assets.lib.fiscal_store import record_city_validations, record_issues
from refresh_assets.lib.scoring import METHODOLOGY_VERSION, score
from tests.conftest import run_cli
from tests.forecast_fixtures import dbt_build, projection_frames, store_projections

pytestmark = pytest.mark.integration

# This file's cities: other tests share the warehouse, and the real data set has no such key.
# Every row with the prefix is removed before and after.
PREFIX = "exports-test-"
CURRENT, FAILED, EMPTY = f"{PREFIX}alpha", f"{PREFIX}beta", f"{PREFIX}gamma"
NAMES = {CURRENT: "Exports Test Alpha", FAILED: "Exports Test Beta", EMPTY: "Exports Test Gamma"}
RUN_1, RUN_2 = "exports-test-run-1", "exports-test-run-2"
BAD_FILE = f"{FAILED}/2021.yaml"
# How the test sorts each mart's rows of one city before comparing them with the files.
SORT = {"scores": ("fiscal_year",), "forecast": ("scenario", "fiscal_year"),
        "validation_issues": ("source_path", "field", "rule"), "status": ()}
TABLES = ("analytics.risk_scores", "analytics.current_scores", "analytics.current_projections",
          "analytics.projection_years", "analytics.projection_summaries",
          "ops.refresh_operations", "ops.city_validations", "ops.validation_results")
CAUTIOUS = {"DBT_INDIRECT_SELECTION": "cautious"}


def delete_test_rows(address) -> None:
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        for table in TABLES:
            cur.execute(sql.SQL("delete from {} where city_key like %s").format(
                sql.Identifier(*table.split("."))), (PREFIX + "%",))


def scores_of(inputs: pd.DataFrame, real_city: str, name: str) -> pd.DataFrame:
    """A real city's four fiscal years, scored under a test city's name."""
    rows = inputs[inputs["city"] == real_city].assign(city=name)
    return score(rows).assign(entry_version=None, methodology_version=METHODOLOGY_VERSION)


def issue(key: str, severity: str, rule: str, message: str, fiscal_year=2021) -> pd.DataFrame:
    return pd.DataFrame([{"city_key": key, "city": NAMES[key], "fiscal_year": fiscal_year,
                          "entry_version": None, "source_path": f"{key}/{fiscal_year}.yaml",
                          "field": "(file)" if severity == "error" else "gf_cash_and_investments",
                          "rule": rule, "severity": severity, "value": None,
                          "message": message}])


@pytest.fixture(scope="module")
def marts(warehouse, dbt_manifest, tmp_path_factory):
    """Run 1 refreshes Alpha and Beta as the assets would record it (scores of two real
    cities' figures, a projection each, a clean or warned validation, success). Run 2 fails
    Beta at ingestion (a malformed entry file: nothing new is written for it) and Gamma, which
    never had data. The marts are then built by dbt."""
    delete_test_rows(warehouse)
    inputs = read_fiscal_inputs_csv(CITY_LIST)
    with warehouse_connection(warehouse) as conn:
        analytics_store.append_scores(conn, RUN_1, pd.concat([
            scores_of(inputs, "Petaluma", NAMES[CURRENT]), scores_of(inputs, "Napa", NAMES[FAILED])]))
        analytics_store.advance_current_scores(conn, [CURRENT, FAILED])  # as projections do
        record_issues(conn, RUN_1, issue(CURRENT, "warning", "overdrawn_cash",
                                         "negative general fund cash", 2020))
        record_city_validations(conn, RUN_1, [CURRENT, FAILED])
        refresh_outcomes.record_successes(conn, RUN_1, "manual", pd.DataFrame(
            [{"city_key": k, "city": NAMES[k]} for k in (CURRENT, FAILED)]))
    store_projections(warehouse, RUN_1,
                      projection_frames(NAMES[CURRENT], 2020, 1000.0, 900.0, 100.0),
                      projection_frames(NAMES[FAILED], 2020, 500.0, 520.0, 40.0))
    with warehouse_connection(warehouse) as conn:
        record_issues(conn, RUN_2, issue(FAILED, "error", "yaml_syntax", "not valid YAML: line 3"))
        record_city_validations(conn, RUN_2, [FAILED])
        refresh_outcomes.record_failures(conn, RUN_2, "manual", "ingestion", pd.DataFrame([
            {"city_key": FAILED, "city": NAMES[FAILED],
             "error": f"{BAD_FILE}: field (file): yaml_syntax: not valid YAML: line 3"},
            {"city_key": EMPTY, "city": NAMES[EMPTY], "error": "no figures"}]))
    # Cautious: a test also reading a model outside the selection (the issues' relationship
    # to raw entries) is left out, as that model may not be built.
    dbt_build(tmp_path_factory.mktemp("exports_marts"), *(f"+{mart}" for mart in MARTS),
              env=CAUTIOUS)
    yield warehouse
    delete_test_rows(warehouse)
    dbt_build(tmp_path_factory.mktemp("exports_marts_after"),
              "city_risk_scores", "city_fiscal_health", "fiscal_validation_issues", env=CAUTIOUS)


def mart_rows(address, dataset, key: str) -> tuple[list[str], list[tuple]]:
    """The mart's columns and this city's rows, read independently of the export."""
    column, value = ("city", NAMES[key]) if dataset.by_name else ("city_key", key)
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("select * from {} where {} = %s").format(
            sql.Identifier("marts", dataset.mart), sql.Identifier(column)), (value,))
        columns = [d.name for d in cur.description]
        rows = cur.fetchall()
    at = [columns.index(c) for c in SORT[dataset.name]]
    return columns, sorted(rows, key=lambda row: [row[i] for i in at])


def read_file(path: Path) -> list[dict]:
    """A file's rows; a CSV's cells stay text (None for an empty field, "" for a quoted one)."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    with path.open(newline="") as handle:
        names = next(csv.reader(handle))
    return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True,
        quoted_strings_can_be_null=False)).to_pylist()


def assert_same(cell, value, as_text: bool, where: str) -> None:
    """A file's cell holds the mart's value: its text in CSV, the value itself in Parquet."""
    if value is None:
        assert cell is None, where
    elif as_text and not isinstance(value, str):
        assert isinstance(cell, str), where
        if isinstance(value, bool):
            assert cell == str(value).lower(), where
        elif isinstance(value, datetime):
            assert datetime.fromisoformat(cell) == value, where
        else:
            assert float(cell) == pytest.approx(float(value), rel=1e-12), where
    elif isinstance(value, Decimal):  # numeric: a float in Parquet
        assert isinstance(cell, float) and cell == pytest.approx(float(value), rel=1e-12), where
    else:
        assert type(cell) is type(value), where
        assert cell == value, where


def export(address, out: Path, file_format: str, *keys: str):
    with warehouse_connection(address) as conn:
        return write_exports(read_marts(conn, keys), out, file_format)


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_each_file_holds_its_marts_rows_value_for_value(marts, tmp_path, file_format):
    export(marts, tmp_path, file_format, CURRENT, FAILED)
    for key in (CURRENT, FAILED):
        for dataset in DATASETS:
            columns, rows = mart_rows(marts, dataset, key)
            assert rows, f"{dataset.mart} has no row of {key}: nothing would be compared"
            exported = read_file(tmp_path / file_format / key / f"{dataset.name}.{file_format}")
            exported.sort(key=lambda row: [row[c] for c in SORT[dataset.name]])
            assert len(exported) == len(rows)
            for row, mart_row in zip(exported, rows, strict=True):
                # The mart's columns in the mart's order, then the export's own.
                assert list(row)[:len(columns)] == columns
                for name, value in zip(columns, mart_row, strict=True):
                    assert_same(row[name], value, file_format == "csv",
                                f"{key} {dataset.name}.{name}")


def test_parquet_keeps_numbers_flags_and_times_typed(marts, tmp_path):
    export(marts, tmp_path, "parquet", CURRENT)
    expected = {"integer": pa.types.is_integer, "bigint": pa.types.is_integer,
                "numeric": pa.types.is_float64, "double precision": pa.types.is_float64,
                "boolean": pa.types.is_boolean, "text": pa.types.is_string,
                "date": pa.types.is_date32, "timestamp with time zone": pa.types.is_timestamp}
    with warehouse_connection(marts) as conn, conn.cursor() as cur:
        cur.execute("select table_name, column_name, data_type from information_schema.columns"
                    " where table_schema = 'marts' and table_name = any(%s)", (list(MARTS),))
        mart_types = {(table, column): data_type for table, column, data_type in cur.fetchall()}
    for dataset in DATASETS:
        schema = pq.read_schema(tmp_path / "parquet" / CURRENT / f"{dataset.name}.parquet")
        for (table, column), data_type in mart_types.items():
            if table == dataset.mart:
                assert expected[data_type](schema.field(column).type), (table, column, data_type)
        assert pa.types.is_string(schema.field("data_status").type)
    status = pq.read_schema(tmp_path / "parquet" / CURRENT / "status.parquet")
    assert status.field("validation_errors").type == pa.int64()
    assert status.field("last_refresh_at").type == pa.timestamp("us", tz="UTC")
    forecast = pq.read_table(tmp_path / "parquet" / CURRENT / "forecast.parquet").to_pandas()
    assert forecast["revenue"].dtype == "float64" and forecast["fiscal_year"].dtype == "int32"


def read_status(out: Path, key: str) -> dict:
    [row] = pq.read_table(out / "parquet" / key / "status.parquet").to_pylist()
    return row


def test_a_city_whose_refresh_failed_exports_its_last_valid_data_and_says_so(marts, tmp_path):
    result = export(marts, tmp_path, "parquet", CURRENT, FAILED, EMPTY)
    assert {c.city_key: c.data_status for c in result.cities} == {
        CURRENT: "current", FAILED: "last_valid", EMPTY: "none"}

    failed = read_status(tmp_path, FAILED)
    assert (failed["data_status"], failed["last_refresh_status"], failed["last_failure_stage"]) == (
        "last_valid", "failure", "ingestion")
    assert failed["last_failure_reason"].startswith(f"{BAD_FILE}: field (file): yaml_syntax")
    assert (failed["validation_errors"], failed["validation_warnings"]) == (1, 0)
    # Its last valid data: run 1's projection and scores, every row marked.
    forecast = pq.read_table(tmp_path / "parquet" / FAILED / "forecast.parquet").to_pylist()
    assert {(r["run_id"], r["data_status"]) for r in forecast} == {(RUN_1, "last_valid")}
    assert len(forecast) == 9  # 3 scenarios x 3 years
    scores = pq.read_table(tmp_path / "parquet" / FAILED / "scores.parquet").to_pylist()
    assert [r["fiscal_year"] for r in scores] == [2017, 2018, 2019, 2020]
    assert {r["data_status"] for r in scores} == {"last_valid"}
    [problem] = pq.read_table(tmp_path / "parquet" / FAILED / "validation_issues.parquet").to_pylist()
    assert (problem["rule"], problem["severity"], problem["is_form_problem"]) == (
        "yaml_syntax", "error", True)
    manifest = json.loads((tmp_path / "parquet" / FAILED / "manifest.json").read_text())
    assert (manifest["data_status"], manifest["failure_stage"]) == ("last_valid", "ingestion")
    assert manifest["failed_at"] == failed["last_failure_at"].isoformat()

    current = read_status(tmp_path, CURRENT)
    assert (current["data_status"], current["last_refresh_status"]) == ("current", "success")
    assert (current["validation_errors"], current["validation_warnings"]) == (0, 1)
    # No score and no forecast: empty files with the marts' columns, and a status row.
    empty = read_status(tmp_path, EMPTY)
    assert (empty["data_status"], empty["last_failure_stage"]) == ("none", "ingestion")
    empty_forecast = pq.read_table(tmp_path / "parquet" / EMPTY / "forecast.parquet")
    assert empty_forecast.num_rows == 0 and "fund_balance_low" in empty_forecast.column_names


def test_cities_are_found_by_name_or_key_and_an_unknown_one_is_named_with_close_matches(marts):
    with warehouse_connection(marts) as conn:
        catalog = city_catalog(conn)
    assert {CURRENT, FAILED, EMPTY} <= set(catalog)
    assert resolve_cities(["Exports Test Beta", CURRENT, "EXPORTS TEST BETA"], catalog) == [
        FAILED, CURRENT]
    with pytest.raises(ExportError) as error:
        resolve_cities([CURRENT, "Exports Tst Alpha"], catalog)
    assert str(error.value).startswith("unknown city 'Exports Tst Alpha': did you mean "
                                       "Exports Test Alpha (exports-test-alpha)")
    with pytest.raises(ExportError, match="^unknown city 'Zzyzx': give a name or key"):
        resolve_cities(["Zzyzx"], catalog)
    # A real city the marts do not have (yet) is told so, not matched to another.
    with pytest.raises(ExportError, match="^city 'Napa' has no data in the marts yet"):
        resolve_cities(["Napa"], {CURRENT: NAMES[CURRENT]})


def test_the_export_command_end_to_end(marts, tmp_path):
    done = run_cli("export", "--city", NAMES[CURRENT], "--city", FAILED, "--format", "csv",
                   "--out", str(tmp_path))
    assert "Exported 2 city(ies) in " in done.stdout
    assert f"{FAILED}: failed at ingestion on " in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    for key in (CURRENT, FAILED):
        manifest = json.loads((tmp_path / "csv" / key / "manifest.json").read_text())
        assert manifest["format"] == "csv" and len(manifest["files"]) == len(DATASETS)
        for entry in manifest["files"]:
            content = (tmp_path / "csv" / key / entry["file"]).read_bytes()
            assert hashlib.sha256(content).hexdigest() == entry["sha256"]
            assert content.count(b"\n") >= entry["rows"] + 1  # the header, then each row
    assert not list(tmp_path.rglob("*.tmp"))

    unknown = run_cli("export", "--city", "Exports Tst Alpha", "--out", str(tmp_path), check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("Error: unknown city 'Exports Tst Alpha': did you mean "
                                     "Exports Test Alpha (exports-test-alpha)")
    assert unknown.stderr.count("\n") == 1

    # Without --city, every city of marts.refresh_status (other tests' cities among them).
    with warehouse_connection(marts) as conn:
        every = len(city_catalog(conn))
    run_cli("export", "--out", str(tmp_path / "all"))
    assert len(list((tmp_path / "all" / "parquet").glob("*/manifest.json"))) == every


def test_the_asset_exports_two_city_partitions_in_one_run(marts, tmp_path, monkeypatch):
    from refresh_assets.definitions import defs
    from refresh_assets.defs.exports import CITY_EXPORTS

    monkeypatch.setenv("REFRESH_EXPORTS_DIR", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        # Added together, so they are adjacent in the partition order: a range of exactly two.
        instance.add_dynamic_partitions("cities", [CURRENT, FAILED])
        try:
            # Through the main job, as refresh-assets materialize runs it.
            result = defs.resolve_job_def("refresh_all").execute_in_process(
                instance=instance, asset_selection=[CITY_EXPORTS],
                tags={"dagster/asset_partition_range_start": CURRENT,
                      "dagster/asset_partition_range_end": FAILED})
            assert result.success
            statuses = {}
            for key in (CURRENT, FAILED):
                [record] = instance.fetch_materializations(dg.AssetRecordsFilter(
                    asset_key=CITY_EXPORTS, asset_partitions=[key]), limit=1).records
                metadata = record.asset_materialization.metadata
                statuses[key] = metadata["data_status"].value
        finally:
            for key in (CURRENT, FAILED):
                instance.delete_dynamic_partition("cities", key)
    assert statuses == {CURRENT: "current", FAILED: "last_valid"}
    assert metadata["cities_exported"].value == 2
    assert metadata["folder"].value == str(tmp_path / "parquet")
    assert metadata["cities_last_valid"].value == 1
    assert FAILED in metadata["last_valid_cities"].value and "ingestion" in metadata[
        "last_valid_cities"].value
    assert metadata["rows"].value == sum(metadata["rows_by_dataset"].value.values()) > 0
    for key in (CURRENT, FAILED):
        assert {p.name for p in (tmp_path / "parquet" / key).iterdir()} == {
            "manifest.json", *(f"{d.name}.parquet" for d in DATASETS)}


def test_automation_exports_only_the_city_refreshed_once_the_marts_follow(dbt_manifest):
    from refresh_assets.definitions import defs
    from refresh_assets.defs.exports import CITY_EXPORTS, MARTS_READ
    from refresh_assets.defs.reports import CHANGE_REPORT

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cities", [CURRENT, FAILED, EMPTY])
    cursor = None

    def tick() -> set[str]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets(CITY_EXPORTS),
            cursor=cursor)
        cursor = result.cursor
        return set(result.get_requested_partitions(CITY_EXPORTS)) if result.total_requested else set()

    def materialized(key: dg.AssetKey, partition: str | None = None) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))

    assert tick() == set()
    materialized(CHANGE_REPORT, FAILED)  # Beta's refresh ended (failed or not)
    assert tick() == set()  # the marts have not followed yet
    for mart in MARTS_READ:
        materialized(mart)
    assert tick() == {FAILED}  # Beta alone, not every city
    assert tick() == set()
    for mart in MARTS_READ:  # a rebuild no refresh preceded exports nothing
        materialized(mart)
    assert tick() == set()
