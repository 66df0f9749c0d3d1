"""A circuit breaker per source, as a pure state machine (its state lives in ops.source_state).

closed: every due check runs; `failures` consecutive failures open it.
open: no check runs until the cool-down ends; the cool-down doubles each time the breaker
  re-opens without having closed in between (60, 120, 240 ... minutes by default).
half_open: after the cool-down, one check is let through: a success closes the breaker
  (and forgets the doublings), a failure opens it again for twice as long.
`refresh-assets check --reset SOURCE` closes it by hand.

Held in the database rather than in a library's memory (pybreaker and the like) because
each sensor tick runs in a fresh evaluation and several processes may check sources.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerState:
    state: str = CLOSED
    consecutive_failures: int = 0
    open_until: datetime | None = None
    openings: int = 0


def admits(breaker: BreakerState, now: datetime) -> BreakerState | None:
    """The state to check under, or None while the breaker is open (no check)."""
    if breaker.state == OPEN:
        if breaker.open_until is not None and now < breaker.open_until:
            return None
        return replace(breaker, state=HALF_OPEN)
    return breaker


def after_success(breaker: BreakerState) -> BreakerState:
    return BreakerState()


def after_failure(breaker: BreakerState, now: datetime, *, failures_to_open: int,
                  cooldown: timedelta) -> BreakerState:
    failures = breaker.consecutive_failures + 1
    if breaker.state == HALF_OPEN or failures >= failures_to_open:
        openings = breaker.openings + 1
        return BreakerState(OPEN, failures, now + cooldown * 2 ** (openings - 1), openings)
    return replace(breaker, consecutive_failures=failures)
