"""One city's crash never stops the others: compute over every city at once (the fast,
vectorised path) and, only if that raises, find the cities that fail by bisection.

With one bad city among n, bisection costs about 2·log2(n) extra calls (18 for 477
cities) instead of n calls for city-by-city computing, and nothing when all is well.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Result = TypeVar("Result")


@dataclass
class Isolated(Generic[Result]):
    """The results of the groups of cities that computed, and the error of each city that
    failed on its own (type, message and the traceback's last frame, for the record)."""

    results: list[Result] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    tracebacks: dict[str, str] = field(default_factory=dict)


def describe(error: BaseException) -> str:
    """`ValueError: message (at projections.py:212 in project)`: enough to find the cause."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in " \
            f"{frames[-1].name})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def compute_isolated(cities: Sequence[str], compute: Callable[[list[str]], Result]
                     ) -> Isolated[Result]:
    """Calls `compute(cities)`; if it raises, splits the cities in halves and tries each
    half, down to single cities, whose errors are recorded instead of raised."""
    outcome: Isolated[Result] = Isolated()
    pending = [list(cities)] if cities else []
    while pending:
        group = pending.pop()
        try:
            outcome.results.append(compute(group))
        # Any error of a city's own computation is that city's: it is recorded with its
        # type, message and traceback, and the other cities go on.
        except Exception as error:  # noqa: BLE001
            if len(group) == 1:
                outcome.errors[group[0]] = describe(error)
                outcome.tracebacks[group[0]] = "".join(traceback.format_exception(error))
            else:
                middle = len(group) // 2
                pending += [group[middle:], group[:middle]]
    return outcome
