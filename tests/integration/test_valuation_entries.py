"""A CalPERS valuation file through the real pipeline (PostgreSQL, the refresh_city job):
it changes its city's projection and nothing else; a refused one holds its city while the
others go on; an unchanged file adds no version."""

import shutil

import dagster as dg
import pandas as pd
import psycopg2
import pytest

from refresh_assets.lib.cities import city_keys_with_data
from refresh_assets.settings import PROJECT_DIR
from tests.unit.test_valuation_entries import NAME, VALID, with_contributions

pytestmark = pytest.mark.integration
# Vallejo's base year is FY2020: a 2022 valuation sets FY2024 and projects to FY2030.
SCHEDULE = {2024: 21_500_000, 2025: 23_650_000, 2026: 26_015_000, 2027: 28_616_500,
            2028: 31_478_150, 2029: 34_625_965, 2030: 38_088_562}
SAFETY = {year: amount // 2 for year, amount in SCHEDULE.items()}


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
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture(scope="module")
def window(instance) -> list[str]:
    """Vallejo and its neighbours in the partition order: one range run refreshes them."""
    known = set(instance.get_dynamic_partitions("cities"))
    instance.add_dynamic_partitions("cities", [c for c in city_keys_with_data(
        PROJECT_DIR / "entries") if c not in known])
    order = instance.get_dynamic_partitions("cities")
    at = order.index("vallejo")
    return order[max(at - 2, 0): at + 3]


def query(address, sql: str, params=()) -> pd.DataFrame:
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def refresh(defs, instance, window) -> dg.ExecuteInProcessResult:
    tags = {"dagster/asset_partition_range_start": window[0],
            "dagster/asset_partition_range_end": window[-1]}
    result = defs.resolve_job_def("refresh_city").execute_in_process(
        instance=instance, tags=tags, raise_on_error=False)
    assert result.success
    return result


def latest_projections(address, cities) -> pd.DataFrame:
    """Each city's latest projection years and summary, without the run's id and time."""
    years = query(address, """
        select y.city_key, y.scenario, y.fiscal_year, y.revenue, y.expenditures,
               y.pension_expenditures, y.fund_balance, s.pension_schedule_source
        from analytics.projection_years as y
        join analytics.projection_summaries as s using (run_id, city_key, scenario)
        where y.city_key = any(%s) and y.run_id = (
            select run_id from analytics.projection_summaries as latest
            where latest.city_key = y.city_key order by projected_at desc limit 1)
        order by 1, 2, 3""", (list(cities),))
    return years.set_index("city_key")


def outcomes(address, run_id: str) -> dict[str, tuple]:
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute("select city_key, status, stage, error from ops.refresh_operations"
                    " where run_id = %s", (run_id,))
        return {key: (status, stage, error) for key, status, stage, error in cur.fetchall()}


def valuation(plan: str, contributions: dict[int, int]) -> str:
    return with_contributions(VALID.replace("plan: Miscellaneous", f"plan: {plan}"),
                              contributions)


def test_a_valuation_changes_its_city_projection_and_nothing_else(defs, instance, window,
                                                                   entries_dir, warehouse):
    refresh(defs, instance, window)
    before = latest_projections(warehouse, window)
    assert set(before.loc["vallejo", "pension_schedule_source"]) == {"calpers_valuation_2016"}

    (entries_dir / "vallejo" / "calpers").mkdir()
    (entries_dir / NAME).write_text(valuation("Miscellaneous", SCHEDULE))
    (entries_dir / "vallejo" / "calpers" / "2022-safety.yaml").write_text(
        valuation("Safety", SAFETY))
    result = refresh(defs, instance, window)
    assert set(outcomes(warehouse, result.run_id).values()) == {("success", None, None)}

    after = latest_projections(warehouse, window)
    others = [c for c in window if c != "vallejo"]
    pd.testing.assert_frame_equal(before.loc[others], after.loc[others])
    assert query(warehouse, "select distinct city_key from analytics.projection_summaries"
                            " where run_id = %s", (result.run_id,))["city_key"].tolist() \
        == ["vallejo"]

    vallejo = after.loc["vallejo"]
    assert set(vallejo["pension_schedule_source"]) == {"calpers_valuation_entry_2022"}
    base = vallejo[vallejo["scenario"] == "base"].set_index("fiscal_year")
    pension = base["pension_expenditures"].astype(float)
    total = {y: SCHEDULE[y] + SAFETY[y] for y in SCHEDULE}
    for year in range(2025, 2031):  # the two plans' summed schedule, year on year
        assert pension[year] / pension[year - 1] == pytest.approx(total[year] / total[year - 1])
    assert pension[2024] / pension[2023] == pytest.approx(1.05)  # no FY2023 in the schedule
    old = before.loc["vallejo"]
    old_base = old[old["scenario"] == "base"].set_index("fiscal_year")
    assert not pension.equals(old_base["pension_expenditures"].astype(float))
    assert not base["expenditures"].astype(float).equals(
        old_base["expenditures"].astype(float))

    stored = query(warehouse, "select plan_key, valuation_date, funded_ratio::float,"
                              " employer_contributions from raw.calpers_valuation_entries"
                              " where city_key = 'vallejo' order by plan_key")
    assert stored["plan_key"].tolist() == ["miscellaneous", "safety"]
    assert stored["funded_ratio"].tolist() == [0.712, 0.712]
    assert stored["employer_contributions"][0] == {str(y): v for y, v in SCHEDULE.items()}


def test_an_unchanged_file_ingested_again_adds_no_version(defs, instance, window, entries_dir,
                                                          warehouse):
    from refresh_assets.defs.entries import fiscal_entries

    path = entries_dir / NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(valuation("Miscellaneous", SCHEDULE))

    def ingest() -> int:
        result = dg.materialize([fiscal_entries], instance=instance, partition_key="vallejo",
                                resources=defs.resources)
        [materialization] = result.asset_materializations_for_node("raw__fiscal_entries")
        return materialization.metadata["valuation_versions_added"].value

    count = ("select count(*) as n from raw.calpers_valuation_entries"
             " where source_path = %s")
    ingest()
    versions = query(warehouse, count, (NAME,))["n"][0]
    assert ingest() == 0
    path.write_text(path.read_text().replace("entered_by: tester", "entered_by: tester  "))
    assert ingest() == 0  # the same content, written again
    assert query(warehouse, count, (NAME,))["n"][0] == versions

    path.write_text(path.read_text().replace("funded_ratio: 0.712", "funded_ratio: 0.72"))
    assert ingest() == 1
    assert query(warehouse, count, (NAME,))["n"][0] == versions + 1


def test_a_refused_valuation_file_holds_its_city_and_the_others_go_on(defs, instance, window,
                                                                      entries_dir, warehouse):
    refresh(defs, instance, window)
    before = latest_projections(warehouse, window)
    (entries_dir / "vallejo" / "calpers").mkdir(exist_ok=True)
    bad = entries_dir / "vallejo" / "calpers" / "2023-miscellaneous.yaml"
    bad.write_text(with_contributions(
        VALID.replace("2022-06-30", "2023-06-30").replace("funded_ratio: 0.712",
                                                          "funded_ratio: 71.2"),
        {2025: 1000, 2026: 1100}))
    try:
        result = refresh(defs, instance, window)
    finally:
        bad.unlink()

    found = outcomes(warehouse, result.run_id)
    status, stage, error = found.pop("vallejo")
    assert (status, stage) == ("failure", "ingestion")
    assert error == ("vallejo/calpers/2023-miscellaneous.yaml: field funded_ratio: "
                     "funded_ratio_range: must be above 0 and at most 2: market value of assets "
                     "/ accrued liability, as a ratio (0.712 for 71.2%) (value: 71.2)")
    assert set(found.values()) == {("success", None, None)}
    check = next(e for e in result.get_asset_check_evaluations()
                 if e.check_name == "entry_files_well_formed")
    assert not check.passed
    assert check.metadata["cities_held"].value == ["vallejo"]
    assert "funded_ratio_range" in check.metadata["details"].value
    # Nothing of the refused file is stored; Vallejo keeps its last projection.
    assert query(warehouse, "select count(*) as n from raw.calpers_valuation_entries"
                            " where valuation_date = '2023-06-30'")["n"][0] == 0
    pd.testing.assert_frame_equal(before, latest_projections(warehouse, window))
