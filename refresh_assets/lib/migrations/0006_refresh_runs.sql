-- 0006: refreshes in progress (issue 10, marts.refresh_status).
--
-- One row per run and city, written when the run takes the city's refresh lock
-- (lib/city_locks.py). A refresh is running while its row has no outcome in
-- ops.refresh_operations: the run records one at its end, and the run failure sensor (or
-- `materialize`) for a run that died.
create table ops.refresh_runs (
    run_id text not null,
    city_key text not null,
    started_at timestamptz not null default now(),
    primary key (run_id, city_key)
);
create index refresh_runs_city on ops.refresh_runs (city_key, started_at);
