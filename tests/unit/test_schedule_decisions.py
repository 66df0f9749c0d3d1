"""The forecast layer's pure schedule decisions (lib/schedule_decisions.py) and the settings
of its three environment variables."""

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from refresh_assets.lib.schedule_decisions import Decision, aggregates_refresh, snapshot_day
from refresh_assets.settings import SettingsError, load_settings

# 2026-11-23 12:00:00 UTC and half an hour later, as Unix timestamps.
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()
HALF_PAST = NOON + 1800


def test_nothing_upstream_materialized_skips_whatever_the_aggregates_did():
    for last_refresh in (None, NOON):
        decision = aggregates_refresh(None, last_refresh)
        assert decision == Decision(False, "nothing upstream of the aggregates has been "
                                           "materialized yet")


def test_aggregates_never_built_run_as_soon_as_something_upstream_exists():
    assert aggregates_refresh(NOON, None) == Decision(True, "the aggregates have never been built")


def test_an_upstream_change_after_the_refresh_runs_and_says_when_both_happened():
    decision = aggregates_refresh(HALF_PAST, NOON)
    assert decision.run
    assert decision.reason == ("upstream changed at 2026-11-23 12:30:00 UTC, after the "
                               "aggregates' refresh at 2026-11-23 12:00:00 UTC")
    # A fraction of a second later is later too.
    assert aggregates_refresh(NOON + 0.001, NOON).run


@pytest.mark.parametrize("last_input_change", [NOON, NOON - 1800])
def test_no_change_since_the_refresh_skips(last_input_change):
    decision = aggregates_refresh(last_input_change, NOON)
    assert decision == Decision(False, "nothing upstream changed since the aggregates' refresh "
                                       "at 2026-11-23 12:00:00 UTC")


@pytest.mark.parametrize(("scheduled_at", "day"), [
    # The default tick, 03:10 UTC: the day that just ended.
    (datetime(2026, 11, 24, 3, 10, tzinfo=UTC), date(2026, 11, 23)),
    (datetime(2026, 11, 24, 0, 0, tzinfo=UTC), date(2026, 11, 23)),
    (datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC), date(2026, 11, 23)),
    # The UTC day decides, not the local one: 19:10 in Los Angeles on the 23rd is 03:10 UTC
    # on the 24th; 00:30 in Paris on the 24th is still the 23rd in UTC.
    (datetime(2026, 11, 23, 19, 10, tzinfo=ZoneInfo("America/Los_Angeles")), date(2026, 11, 23)),
    (datetime(2026, 11, 24, 0, 30, tzinfo=ZoneInfo("Europe/Paris")), date(2026, 11, 22)),
    # Month, year and leap-day boundaries.
    (datetime(2027, 1, 1, 3, 10, tzinfo=UTC), date(2026, 12, 31)),
    (datetime(2028, 3, 1, 3, 10, tzinfo=UTC), date(2028, 2, 29)),
])
def test_the_snapshot_day_is_the_utc_day_before_the_tick(scheduled_at, day):
    assert snapshot_day(scheduled_at) == day


def test_the_forecast_settings_default_to_730_days_at_03_10_utc():
    settings = load_settings({})
    assert (settings.snapshot_retention_days, settings.snapshot_hour_utc,
            settings.snapshot_minute_utc) == (730, 3, 10)
    # An empty variable is the default, as for the project's other variables.
    settings = load_settings({"FORECAST_SNAPSHOT_RETENTION_DAYS": "",
                              "FORECAST_SNAPSHOT_CRON_HOUR_UTC": "",
                              "FORECAST_SNAPSHOT_CRON_MINUTE_UTC": ""})
    assert (settings.snapshot_retention_days, settings.snapshot_hour_utc,
            settings.snapshot_minute_utc) == (730, 3, 10)


@pytest.mark.parametrize(("name", "value", "attribute"), [
    ("FORECAST_SNAPSHOT_RETENTION_DAYS", "1", "snapshot_retention_days"),
    ("FORECAST_SNAPSHOT_RETENTION_DAYS", "100000", "snapshot_retention_days"),
    ("FORECAST_SNAPSHOT_CRON_HOUR_UTC", "0", "snapshot_hour_utc"),
    ("FORECAST_SNAPSHOT_CRON_HOUR_UTC", "23", "snapshot_hour_utc"),
    ("FORECAST_SNAPSHOT_CRON_MINUTE_UTC", "0", "snapshot_minute_utc"),
    ("FORECAST_SNAPSHOT_CRON_MINUTE_UTC", "59", "snapshot_minute_utc"),
])
def test_the_forecast_settings_accept_their_whole_range(name, value, attribute):
    assert getattr(load_settings({name: value}), attribute) == int(value)


@pytest.mark.parametrize(("name", "value", "why"), [
    ("FORECAST_SNAPSHOT_RETENTION_DAYS", "abc", "must be a whole number, got 'abc'"),
    ("FORECAST_SNAPSHOT_RETENTION_DAYS", "1.5", "must be a whole number, got '1.5'"),
    ("FORECAST_SNAPSHOT_RETENTION_DAYS", "0", "must be between 1 and 100000, got 0"),
    ("FORECAST_SNAPSHOT_RETENTION_DAYS", "-3", "must be a whole number, got '-3'"),
    # Digits only, as dbt reads the same variable: int() would take these.
    ("FORECAST_SNAPSHOT_RETENTION_DAYS", " 30", "must be a whole number, got ' 30'"),
    ("FORECAST_SNAPSHOT_RETENTION_DAYS", "1_000", "must be a whole number, got '1_000'"),
    ("FORECAST_SNAPSHOT_RETENTION_DAYS", "100001", "must be between 1 and 100000, got 100001"),
    ("FORECAST_SNAPSHOT_CRON_HOUR_UTC", "24", "must be between 0 and 23, got 24"),
    ("FORECAST_SNAPSHOT_CRON_HOUR_UTC", "-1", "must be a whole number, got '-1'"),
    ("FORECAST_SNAPSHOT_CRON_HOUR_UTC", "3am", "must be a whole number, got '3am'"),
    ("FORECAST_SNAPSHOT_CRON_MINUTE_UTC", "60", "must be between 0 and 59, got 60"),
    ("FORECAST_SNAPSHOT_CRON_MINUTE_UTC", "*/5", "must be a whole number, got '*/5'"),
])
def test_a_bad_forecast_setting_names_the_variable(name, value, why):
    with pytest.raises(SettingsError, match=f"^{re.escape(f'{name} {why}')}$"):
        load_settings({name: value})
