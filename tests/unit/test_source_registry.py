"""The source registry: the repo's file loads, and every problem names file, field and rule."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from refresh_assets.lib.sources.registry import (
    RegistryError,
    is_due,
    latest_cadence_day,
    load_registry,
)
from refresh_assets.settings import PROJECT_DIR

MINIMAL = """
checks: {user_agent: "refresh-assets tests", poll_every_minutes: 60}
cadence:
  acfr: {months: [1, 4, 7, 10], day: 15}
  calpers_valuation: {months: [7], day: 1}
hosts: {127.0.0.1: }
cities:
  Vallejo:
    finance_pages: [http://127.0.0.1:8000/finance]
    calpers_plans: {Safety Police: "http://127.0.0.1:8000/calpers?plan=police"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


def test_the_projects_registry_loads_with_vallejo_and_its_calpers_plans():
    registry = load_registry(PROJECT_DIR / "sources.yaml")
    ids = [s.source_id for s in registry.selected("Vallejo")]
    assert "vallejo/finance" in ids
    assert {"vallejo/calpers-miscellaneous", "vallejo/calpers-safety-police"} <= set(ids)
    assert all(s.host in registry.allowed_hosts for s in registry.sources)
    assert registry.cadence["acfr"].months == [1, 4, 7, 10]


def test_sources_get_stable_ids_types_and_plans(tmp_path):
    registry = load_registry(write(tmp_path, MINIMAL))
    finance, police = registry.sources
    assert (finance.source_id, finance.doc_types) == ("vallejo/finance", ("acfr",))
    assert (police.source_id, police.doc_types, police.plan) == (
        "vallejo/calpers-safety-police", ("calpers_valuation",), "Safety Police")
    assert registry.selected(doc_type="calpers_valuation") == [police]
    assert registry.host_intervals == {"127.0.0.1": 2.0}


@pytest.mark.parametrize(("change", "expected"), [
    (("Vallejo:", "Valejo:"), "field cities.Valejo: known_city: no California city of that name; "
                              "did you mean Vallejo?"),
    (("http://127.0.0.1:8000/finance", "http://example.org/finance"),
     "allowed_host: http://example.org/finance is on example.org, which is not listed under hosts:"),
    (("poll_every_minutes: 60", "poll_every_minutes: 60, colour: red"),
     "field checks.colour: extra_forbidden: unknown field"),
    (("day: 15", "day: 31"), "field cadence.acfr.day: less_than_equal"),
    (("  calpers_valuation: {months: [7], day: 1}\n", ""),
     "field cadence: required: no cadence for calpers_valuation"),
    (("finance_pages: [http://127.0.0.1:8000/finance]", "finance_pages: [not a url]"),
     "field cities.Vallejo.finance_pages.0"),
    (("cities:", "cities: [\n"), "not valid YAML"),
])
def test_a_bad_registry_is_refused_naming_file_field_and_rule(tmp_path, change, expected):
    path = write(tmp_path, MINIMAL.replace(*change))
    with pytest.raises(RegistryError) as error:
        load_registry(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_every_problem_is_reported_at_once(tmp_path):
    text = MINIMAL.replace("Vallejo:", "Nowhere Town:") + "  Benicia:\n    finance_pages: [http://x.org/f]\n"
    with pytest.raises(RegistryError) as error:
        load_registry(write(tmp_path, text))
    assert "Nowhere Town" in str(error.value) and "x.org" in str(error.value)


def test_a_missing_registry_says_which_variable_to_set(tmp_path):
    with pytest.raises(RegistryError, match="REFRESH_SOURCES_FILE"):
        load_registry(tmp_path / "absent.yaml")


def test_the_latest_cadence_day_is_the_15th_of_the_last_quarter_month(tmp_path):
    registry = load_registry(write(tmp_path, MINIMAL))
    acfr = registry.cadence["acfr"]
    assert latest_cadence_day(acfr, datetime(2026, 11, 23, tzinfo=UTC)) == datetime(2026, 10, 15, tzinfo=UTC)
    assert latest_cadence_day(acfr, datetime(2026, 1, 14, tzinfo=UTC)) == datetime(2025, 10, 15, tzinfo=UTC)
    calpers = registry.cadence["calpers_valuation"]
    assert latest_cadence_day(calpers, datetime(2026, 6, 30, tzinfo=UTC)) == datetime(2025, 7, 1, tzinfo=UTC)


def test_a_source_is_due_by_interval_or_by_a_cadence_day_passed_since_its_last_check(tmp_path):
    registry = load_registry(write(tmp_path, MINIMAL.replace("poll_every_minutes: 60",
                                                             "poll_every_minutes: 100000")))
    finance = registry.sources[0]
    now = datetime(2026, 10, 20, tzinfo=UTC)
    assert is_due(finance, registry, None, now)
    assert not is_due(finance, registry, now - timedelta(days=1), now)
    # Last checked before 15 October: the quarterly check is owed.
    assert is_due(finance, registry, datetime(2026, 10, 14, tzinfo=UTC), now)
    short = load_registry(write(tmp_path, MINIMAL))
    assert is_due(short.sources[0], short, now - timedelta(minutes=61), now)
    assert not is_due(short.sources[0], short, now - timedelta(minutes=59), now)
