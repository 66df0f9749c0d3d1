"""When the scheduled dbt work should run: pure decisions, wired in defs/schedules.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str


def _at(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def aggregates_refresh(last_input_change: float | None, last_refresh: float | None) -> Decision:
    """Refresh the aggregates when something they read was materialized after their oldest
    refresh (times are Unix timestamps; None = never)."""
    if last_input_change is None:
        return Decision(False, "nothing upstream of the aggregates has been materialized yet")
    if last_refresh is None:
        return Decision(True, "the aggregates have never been built")
    if last_input_change > last_refresh:
        return Decision(True, f"upstream changed at {_at(last_input_change)}, after the "
                              f"aggregates' refresh at {_at(last_refresh)}")
    return Decision(False, f"nothing upstream changed since the aggregates' refresh at "
                           f"{_at(last_refresh)}")


def snapshot_day(scheduled_at: datetime) -> date:
    """The snapshot a tick takes: the UTC day that ended before it (03:10 on the 24th takes
    the 23rd), the usual meaning of a daily partition."""
    return (scheduled_at.astimezone(UTC) - timedelta(days=1)).date()
