"""PostgreSQL advisory locks per city: one refresh of a city at a time, whichever way it was
launched (the daemon's queue, a UI launch, a backfill, `materialize` in process, a test).

Two kinds, in separate key spaces so that one never waits on the other:
- a run's lock (`CityRunLocks`): held on a connection of its own from the start of a run to
  its end, so a second refresh of the same city waits for the first to finish;
- a transaction's lock (`lock_cities_for_transaction`): held by a write to a city's rows
  until it commits, so two writers outside any run still cannot interleave.
Cities are always locked in sorted order, so two runs over overlapping sets of cities (a
full refresh and one city) queue instead of deadlocking. Different cities never wait on
each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from refresh_assets.lib.database import ServerAddress, connect

# First half of the two-int advisory-lock keys; the second half is hashtext(city_key).
RUN_LOCK_SPACE = 7_240_101
WRITE_LOCK_SPACE = 7_240_102
APPLICATION_PREFIX = "refresh_assets run "


def lock_cities_for_transaction(conn, city_keys: Iterable[str]) -> None:
    """Waits until no other transaction writes these cities, then holds them until commit."""
    with conn.cursor() as cur:
        cur.execute(
            "select pg_advisory_xact_lock(%s, hashtext(city_key))"
            " from (select distinct unnest(%s::text[]) as city_key order by 1) as cities",
            (WRITE_LOCK_SPACE, sorted(set(city_keys))),
        )


class CityRunLocks:
    """Holds the run locks of `city_keys` for as long as it is open (a context manager).

    `on_wait(city_key, holder)` is called before waiting for a city that another run holds;
    `holder` is that run's id when it can be read from the holder's connection.
    """

    def __init__(self, address: ServerAddress, run_id: str, city_keys: Sequence[str],
                 on_wait: Callable[[str, str | None], None] | None = None):
        self.address = address
        self.run_id = run_id
        self.city_keys = sorted(set(city_keys))
        self.on_wait = on_wait
        self._conn = None

    def __enter__(self) -> CityRunLocks:
        self._conn = connect(self.address,
                             application_name=f"{APPLICATION_PREFIX}{self.run_id}")
        self._conn.autocommit = True  # session locks: no transaction left open while held
        try:
            self._acquire()
        except BaseException:
            self._conn.close()
            raise
        return self

    def _acquire(self) -> None:
        # Strictly in sorted order, waiting at each busy city: taking the free ones first
        # and waiting for the others later could deadlock two overlapping runs.
        with self._conn.cursor() as cur:
            for city in self.city_keys:
                cur.execute("select pg_try_advisory_lock(%s, hashtext(%s))",
                            (RUN_LOCK_SPACE, city))
                if cur.fetchone()[0]:
                    continue
                if self.on_wait:
                    self.on_wait(city, self._holder(cur, city))
                cur.execute("select pg_advisory_lock(%s, hashtext(%s))", (RUN_LOCK_SPACE, city))
            # The run now refreshes these cities: marts.refresh_status shows them running
            # until the run records their outcome.
            cur.execute("insert into ops.refresh_runs (run_id, city_key)"
                        " select %s, unnest(%s::text[]) on conflict do nothing",
                        (self.run_id, self.city_keys))

    @staticmethod
    def _holder(cur, city_key: str) -> str | None:
        cur.execute(
            """
            select activity.application_name from pg_locks as lock
            join pg_stat_activity as activity using (pid)
            where lock.locktype = 'advisory' and lock.granted and lock.objsubid = 2
              and lock.classid = %s::bigint::oid
              and lock.objid = (hashtext(%s)::bigint & 4294967295)::oid
            """,
            (RUN_LOCK_SPACE, city_key),
        )
        row = cur.fetchone()
        if row is None or not row[0].startswith(APPLICATION_PREFIX):
            return None
        return row[0].removeprefix(APPLICATION_PREFIX)

    def __exit__(self, *exc_info) -> None:
        # Closing the session releases every lock it holds, even after an error.
        self._conn.close()
