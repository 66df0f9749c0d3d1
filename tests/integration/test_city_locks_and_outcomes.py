"""The primitives under one-refresh-per-city and the refresh records, on the real server."""

import threading
import time

import pandas as pd
import pytest

from refresh_assets.lib import refresh_outcomes
from refresh_assets.lib.city_locks import CityRunLocks
from refresh_assets.lib.database import warehouse_connection

pytestmark = pytest.mark.integration


def test_a_city_held_by_a_run_makes_the_next_run_wait_and_say_for_whom(warehouse):
    waits, timeline = [], []
    with CityRunLocks(warehouse, "run-a", ["napa", "vallejo"]):
        def second_run():
            with CityRunLocks(warehouse, "run-b", ["vallejo"],
                              on_wait=lambda city, holder: waits.append((city, holder))):
                timeline.append(("b acquired", time.monotonic()))

        other = threading.Thread(target=second_run)
        other.start()
        time.sleep(1.0)
        assert timeline == []  # still waiting
        # A run of another city does not wait at all.
        with CityRunLocks(warehouse, "run-c", ["oakland"], on_wait=lambda *a: waits.append(a)):
            pass
        timeline.append(("a released", time.monotonic()))
    other.join(timeout=30)
    assert waits == [("vallejo", "run-a")]
    assert [event for event, _ in timeline] == ["a released", "b acquired"]


def test_the_first_outcome_of_a_run_and_city_stands(warehouse):
    run = "outcome-test-run"
    with warehouse_connection(warehouse) as conn:
        failed = refresh_outcomes.record_failures(conn, run, "manual", "validation", pd.DataFrame(
            [{"city_key": "benicia", "city": "Benicia", "error": "benicia/2019.yaml: bad"}]))
        succeeded = refresh_outcomes.record_successes(conn, run, "manual", pd.DataFrame(
            [{"city_key": "benicia", "city": "Benicia"}, {"city_key": "napa", "city": "Napa"}]))
        later = refresh_outcomes.record_failures(conn, run, "manual", "run", pd.DataFrame(
            [{"city_key": "napa", "city": "Napa", "error": "the run failed"}]))
        outcomes = refresh_outcomes.run_outcomes(conn, run)
        held = refresh_outcomes.failed_cities(conn, run)
    assert (failed, succeeded, later) == (1, 1, 0)
    assert outcomes[["city_key", "status", "stage"]].fillna("-").values.tolist() == [
        ["benicia", "failure", "validation"], ["napa", "success", "-"]]
    assert held == {"benicia": "validation"}
    with pytest.raises(ValueError, match="unknown stage"), warehouse_connection(warehouse) as conn:
        refresh_outcomes.record_failures(conn, run, "manual", "typo", pd.DataFrame())


def test_a_city_is_running_from_its_lock_until_its_outcome(warehouse):
    """ops.refresh_runs gets the run's cities once it holds them; the staging view that
    marts.refresh_status reads calls them running until the run records their outcome."""
    run = "running-test-run"

    def running() -> set[str]:
        with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
            cur.execute("select r.city_key from ops.refresh_runs as r"
                        " left join ops.refresh_operations as o using (run_id, city_key)"
                        " where r.run_id = %s and o.status is null", (run,))
            return {row[0] for row in cur.fetchall()}

    with CityRunLocks(warehouse, run, ["running-test-a", "running-test-b"]):
        assert running() == {"running-test-a", "running-test-b"}
        with warehouse_connection(warehouse) as conn:
            refresh_outcomes.record_failures(conn, run, "manual", "scoring", pd.DataFrame(
                [{"city_key": "running-test-a", "city": "A", "error": "boom"}]))
        assert running() == {"running-test-b"}
