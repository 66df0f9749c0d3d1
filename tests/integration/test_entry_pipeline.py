"""From an edited entry file to the marts: the sensor, the city's run, validation, dbt.

Runs on the real PostgreSQL (warehouse and Dagster instance) with a copy of the shipped
Vallejo entries in a folder of its own.
"""

import shutil

import dagster as dg
import psycopg2
import pytest
import yaml

from refresh_assets.settings import PROJECT_DIR

pytestmark = pytest.mark.integration
VALIDATED_VIEW = dg.AssetKey(["staging", "stg_analytics__validated_fiscal_data"])
MART = dg.AssetKey(["marts", "city_fiscal_years"])


@pytest.fixture(scope="module")
def entries_dir(tmp_path_factory, warehouse):
    folder = tmp_path_factory.mktemp("entries")
    shutil.copytree(PROJECT_DIR / "entries" / "vallejo", folder / "vallejo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFRESH_ENTRIES_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def defs(dbt_manifest, entries_dir):
    from refresh_assets.definitions import defs

    return defs


@pytest.fixture(scope="module")
def instance(warehouse):
    with dg.DagsterInstance.get() as instance:  # the test server's `dagster` database
        yield instance


def query(address, sql: str, params=()):
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


class Operator:
    """Ticks the sensor the way the daemon does, and runs what it asks for."""

    def __init__(self, defs, instance):
        self.defs, self.instance, self.cursor = defs, instance, None
        self.sensor = defs.resolve_sensor_def("entry_files_sensor")
        self.automation_cursor = None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor,
            resources={name: self.defs.resources[name] for name in ("source_files", "warehouse")})
        result = self.sensor(context)
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name,
                                                 list(request.partition_keys))
        return result

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def("refresh_city")
        return job.execute_in_process(instance=self.instance, partition_key=request.partition_key,
                                      tags=request.tags, raise_on_error=False)

    def automation_requests(self) -> set[dg.AssetKey]:
        """What the automation sensor would run now (dbt models wait for valid upstream)."""
        result = dg.evaluate_automation_conditions(self.defs, self.instance,
                                                   cursor=self.automation_cursor)
        self.automation_cursor = result.cursor
        return {r.key for r in result.results if r.true_subset.size}

    def build_marts(self) -> dg.ExecuteInProcessResult:
        """The dbt build the automation sensor launches after refreshes: the models under
        automation (the aggregates, snapshots and backtest are scheduled)."""
        from refresh_assets.defs.dbt import AUTOMATED_MODELS, warehouse_dbt_models

        return dg.materialize([warehouse_dbt_models], instance=self.instance,
                              resources=self.defs.resources, selection=AUTOMATED_MODELS)


def outcome(address, run_id: str) -> tuple[str, str | None, str | None]:
    [row] = query(address, "select status, stage, error from ops.refresh_operations"
                           " where run_id = %s and city_key = 'vallejo'", (run_id,))
    return row


def edit(entries_dir, year: int, **figures):
    path = entries_dir / "vallejo" / f"{year}.yaml"
    document = yaml.safe_load(path.read_text())
    document["figures"].update(figures)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def vallejo_2019(address, column: str, table: str = "marts.city_fiscal_years"):
    return query(address, f"select {column} from {table}"
                          " where city = 'Vallejo' and fiscal_year = 2019")


def test_an_edit_refreshes_vallejo_alone_and_reaches_the_marts(defs, instance, entries_dir,
                                                                warehouse):
    operator = Operator(defs, instance)

    first = operator.tick()
    assert [r.partition_key for r in first.run_requests] == ["vallejo"]
    assert operator.run(first.run_requests[0]).success
    assert operator.build_marts().success
    assert vallejo_2019(warehouse, "gf_revenues::bigint") == [(110163546,)]
    assert operator.tick().run_requests == []  # nothing changed, nothing to run
    operator.automation_requests()  # the automation sensor's first tick

    edit(entries_dir, 2019, gf_revenues=111000000)
    second = operator.tick()
    assert [r.partition_key for r in second.run_requests] == ["vallejo"]
    assert second.run_requests[0].tags["refresh/changed_files"] == "vallejo/2019.yaml"
    result = operator.run(second.run_requests[0])
    assert result.success
    # The city's run builds no dbt model: the marts operators wait for are views over the
    # city's current projection, readable as soon as the run's projection committed.
    built = {e.asset_key for e in result.get_asset_materialization_events()}
    assert not any(key.path[0] in ("staging", "intermediate", "marts") for key in built)
    newest = query(warehouse, "select max(entry_version) from raw.fiscal_entries"
                              " where city = 'Vallejo'")
    assert query(warehouse, "select max(entry_version) from marts.city_risk_scores"
                            " where city_key = 'vallejo'") == newest
    # The dbt tables follow a valid update by automation (the staging view first).
    assert {VALIDATED_VIEW, MART} <= operator.automation_requests()
    assert operator.build_marts().success
    assert vallejo_2019(warehouse, "gf_revenues::bigint") == [(111000000,)]
    # Per source, in the order stored (the sensor stores an entry file's version when it
    # sees it, before the run stores the bulk import's).
    versions = query(warehouse, "select source_kind, gf_revenues::bigint from raw.fiscal_entries"
                                " where city = 'Vallejo' and fiscal_year = 2019"
                                " order by source_kind, entry_version")
    assert versions == [("bulk_import", 110163546), ("entry_file", 110163546),
                        ("entry_file", 111000000)]
    change = vallejo_2019(warehouse, "figure, previous_value::bigint, value::bigint",
                          "marts.fiscal_entry_changes")
    assert ("gf_revenues", 110163546, 111000000) in change


def test_an_invalid_edit_is_refused_and_downstream_stays_on_valid_data(defs, instance,
                                                                        entries_dir, warehouse):
    operator = Operator(defs, instance)
    operator.tick()  # catch up with the files as they are
    operator.automation_requests()
    valid_before = vallejo_2019(warehouse, "gf_revenues::bigint, entry_version",
                                "analytics.validated_fiscal_data")

    edit(entries_dir, 2019, gf_revenues=-5)
    [request] = operator.tick().run_requests
    result = operator.run(request)
    check = next(e for e in result.get_asset_check_evaluations()
                 if e.check_name == "no_validation_errors")
    assert not check.passed
    assert "gf_revenues" in check.metadata["details"].value
    assert "non_negative" in check.metadata["details"].value

    # The run goes on for the other steps; Vallejo is held back and says why.
    assert result.success
    assert outcome(warehouse, result.run_id) == (
        "failure", "validation",
        "vallejo/2019.yaml: field gf_revenues: non_negative: cannot be negative in audited "
        "statements (value: -5)")
    # Nothing entered is lost; downstream keeps the last valid version.
    assert query(warehouse, "select count(*) from raw.fiscal_entries where city = 'Vallejo'"
                            " and fiscal_year = 2019 and gf_revenues = -5") == [(1,)]
    assert vallejo_2019(warehouse, "gf_revenues::bigint, entry_version",
                        "analytics.validated_fiscal_data") == valid_before
    assert query(warehouse, "select count(*) from analytics.risk_scores where run_id = %s",
                 (result.run_id,)) == [(0,)]
    recorded = query(warehouse, "select source_path, field, rule from ops.validation_results"
                                " where city = 'Vallejo' and severity = 'error'")
    assert ("vallejo/2019.yaml", "gf_revenues", "non_negative") in recorded

    # The marts follow, and still show the last valid figures.
    operator.automation_requests()
    assert operator.build_marts().success
    assert vallejo_2019(warehouse, "gf_revenues::bigint") == [(valid_before[0][0],)]


def test_malformed_and_deleted_files_change_nothing_in_raw(defs, instance, entries_dir,
                                                           warehouse):
    operator = Operator(defs, instance)
    operator.tick()
    count = "select count(*) from raw.fiscal_entries where city = 'Vallejo'"
    before = query(warehouse, count)

    path = entries_dir / "vallejo" / "2018.yaml"
    original = path.read_text()
    path.write_text(original + "figures: [this is not\n")
    [request] = operator.tick().run_requests
    result = operator.run(request)
    check = next(e for e in result.get_asset_check_evaluations()
                 if e.check_name == "entry_files_well_formed")
    assert not check.passed
    assert "vallejo/2018.yaml" in check.metadata["details"].value
    assert query(warehouse, count) == before
    # The city is held back at ingestion, named with its file, and the run goes on.
    assert result.success
    status, stage, error = outcome(warehouse, result.run_id)
    assert (status, stage) == ("failure", "ingestion")
    assert error.startswith("vallejo/2018.yaml: field (file): yaml_syntax: not valid YAML")

    path.unlink()
    deleted = operator.tick()
    assert deleted.run_requests == []
    assert query(warehouse, count) == before
