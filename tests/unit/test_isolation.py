"""compute_isolated: all at once when all is well, bisection to the failing cities when not."""

import pandas as pd

from refresh_assets.lib.isolation import compute_isolated


def test_all_at_once_when_nothing_fails():
    calls = []
    outcome = compute_isolated(["a", "b", "c"], lambda group: calls.append(group) or len(group))
    assert calls == [["a", "b", "c"]]
    assert (outcome.results, outcome.errors) == ([3], {})


def test_the_failing_cities_are_found_and_the_others_computed():
    cities = [f"city-{i:03d}" for i in range(477)]
    bad = {"city-100", "city-401"}
    calls = []

    def compute(group):
        calls.append(len(group))
        if bad & set(group):
            raise ValueError(f"bad figures in {sorted(bad & set(group))[0]}")
        return group

    outcome = compute_isolated(cities, compute)
    assert set(outcome.errors) == bad
    assert outcome.errors["city-100"].startswith("ValueError: bad figures in city-100 (at ")
    assert "in compute)" in outcome.errors["city-100"]
    assert sorted(c for group in outcome.results for c in group) == sorted(set(cities) - bad)
    assert len(calls) < 40  # bisection, not one call per city
    assert "Traceback" in outcome.tracebacks["city-401"]


def test_no_city_no_call():
    outcome = compute_isolated([], lambda group: pd.DataFrame())
    assert (outcome.results, outcome.errors) == ([], {})
