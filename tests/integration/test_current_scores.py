"""The score marts are views over each city's current scoring (analytics.current_scores, the
pointer the projections step advances with the city's projection): a new scoring is readable
in marts.city_risk_scores and city_fiscal_health the moment it becomes current, with no dbt
build; stored but not yet current, it is not shown; and a run that began earlier but commits
later does not displace a newer one."""

import pandas as pd
import pytest

from refresh_assets.lib import analytics_store
from refresh_assets.lib.cities import CITY_LIST
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.fiscal_inputs import read_fiscal_inputs_csv
from refresh_assets.lib.scoring import METHODOLOGY_VERSION, score
from tests.forecast_fixtures import dbt_build

pytestmark = pytest.mark.integration

KEY, NAME = "current-scores-test-city", "Current Scores Test City"
FIRST, SECOND = "current-scores-first", "current-scores-second"
EARLY, LATE = "current-scores-early", "current-scores-late"


def scores(real_city: str) -> pd.DataFrame:
    """A real city's fiscal years, scored under the test city's name."""
    inputs = read_fiscal_inputs_csv(CITY_LIST)
    rows = inputs[inputs["city"] == real_city].assign(city=NAME)
    return score(rows).assign(entry_version=None, methodology_version=METHODOLOGY_VERSION)


def delete_test_rows(address) -> None:
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        for table in ("analytics.risk_scores", "analytics.current_scores"):
            cur.execute(f"delete from {table} where city_key = %s", (KEY,))


def mart_points(address) -> dict[str, list]:
    with warehouse_connection(address) as conn, conn.cursor() as cur:
        cur.execute("select fiscal_year, overall_points from marts.city_risk_scores"
                    " where city_key = %s order by fiscal_year", (KEY,))
        risk = cur.fetchall()
        cur.execute("select fiscal_year, overall_points, previous_overall_points"
                    " from marts.city_fiscal_health where city_key = %s", (KEY,))
        return {"risk": risk, "health": cur.fetchall()}


def expected(frame: pd.DataFrame) -> dict[str, list]:
    rows = frame.sort_values("fiscal_year")
    points = [(int(year), round(float(points), 2))
              for year, points in zip(rows["fiscal_year"], rows["overall_points"], strict=True)]
    return {"risk": points, "health": [(*points[-1], points[-2][1])]}


def as_floats(found: dict[str, list]) -> dict[str, list]:
    return {mart: [tuple(float(v) if i else int(v) for i, v in enumerate(row)) for row in rows]
            for mart, rows in found.items()}


@pytest.fixture(scope="module")
def views(warehouse, dbt_manifest, tmp_path_factory):
    delete_test_rows(warehouse)
    dbt_build(tmp_path_factory.mktemp("current_scores"), "+city_fiscal_health")
    yield warehouse
    delete_test_rows(warehouse)


def test_a_stored_scoring_is_in_the_marts_without_a_dbt_build(views):
    napa, petaluma = scores("Napa"), scores("Petaluma")
    with warehouse_connection(views) as conn:
        analytics_store.append_scores(conn, FIRST, napa)
        analytics_store.advance_current_scores(conn, [KEY])
    assert as_floats(mart_points(views)) == expected(napa)
    with warehouse_connection(views) as conn:
        analytics_store.append_scores(conn, SECOND, petaluma)
    # Stored, not current yet (a run cut off before its projections): not shown.
    assert as_floats(mart_points(views)) == expected(napa)
    with warehouse_connection(views) as conn:
        analytics_store.advance_current_scores(conn, [KEY])
    assert as_floats(mart_points(views)) == expected(petaluma)
    assert napa["overall_points"].tolist() != petaluma["overall_points"].tolist()


def test_a_run_that_began_earlier_but_commits_later_does_not_displace_the_current_one(views):
    # After the test above, Petaluma's figures are current: the late run's (Napa's) must win.
    early, late = scores("Petaluma"), scores("Napa")
    with warehouse_connection(views) as first, warehouse_connection(views) as second:
        with first.cursor() as cur:
            cur.execute("select now()")  # the early run's transaction starts here
        analytics_store.append_scores(second, LATE, late)
        analytics_store.advance_current_scores(second, [KEY])
        second.commit()  # the late run commits first
        analytics_store.append_scores(first, EARLY, early)
        analytics_store.advance_current_scores(first, [KEY])
    with warehouse_connection(views) as conn, conn.cursor() as cur:
        cur.execute("select run_id from analytics.current_scores where city_key = %s", (KEY,))
        assert cur.fetchall() == [(LATE,)]
        cur.execute("select count(distinct run_id) from analytics.risk_scores where city_key = %s"
                    " and run_id in (%s, %s)", (KEY, EARLY, LATE))
        assert cur.fetchone()[0] == 2  # both runs' history kept
    assert as_floats(mart_points(views)) == expected(late)
