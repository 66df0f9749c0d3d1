"""The circuit breaker: opens after N failures, cool-down doubling, one trial check, closing."""

from datetime import UTC, datetime, timedelta

from refresh_assets.lib.sources.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerState,
    admits,
    after_failure,
    after_success,
)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
RULES = {"failures_to_open": 5, "cooldown": timedelta(minutes=60)}


def fail(state: BreakerState, times: int, now: datetime = NOW) -> BreakerState:
    for _ in range(times):
        state = after_failure(state, now, **RULES)
    return state


def test_four_failures_keep_it_closed_the_fifth_opens_it():
    assert fail(BreakerState(), 4).state == CLOSED
    opened = fail(BreakerState(), 5)
    assert opened.state == OPEN
    assert opened.open_until == NOW + timedelta(minutes=60)


def test_an_open_breaker_admits_nothing_until_its_cool_down_ends_then_one_trial():
    opened = fail(BreakerState(), 5)
    assert admits(opened, NOW + timedelta(minutes=59)) is None
    trial = admits(opened, NOW + timedelta(minutes=60))
    assert trial is not None and trial.state == HALF_OPEN


def test_a_failed_trial_reopens_for_twice_as_long_and_a_success_closes_and_forgets():
    later = NOW + timedelta(minutes=60)
    reopened = after_failure(admits(fail(BreakerState(), 5), later), later, **RULES)
    assert reopened.state == OPEN
    assert reopened.open_until == later + timedelta(minutes=120)
    again = NOW + timedelta(minutes=180)
    third = after_failure(admits(reopened, again), again, **RULES)
    assert third.open_until == again + timedelta(minutes=240)
    closed = after_success(admits(third, again + timedelta(minutes=240)))
    assert closed == BreakerState()
    assert fail(closed, 4).state == CLOSED  # the count starts afresh


def test_a_success_between_failures_resets_the_count():
    state = after_success(fail(BreakerState(), 4))
    assert fail(state, 4).state == CLOSED
