-- 0005: each city's current projection run, found through an index (issue 10).
--
-- The projection tables keep every run (history for the change report and backtests).
-- Reading "the latest run" by ranking that history on every query grows with the history;
-- analytics.current_projections names each city's current run instead, and is written in
-- the transaction that appends the run, so a reader sees the new pointer and its rows
-- together or neither.
create table analytics.current_projections (
    city_key text primary key,
    city text not null,
    run_id text not null,
    projected_at timestamptz not null
);

-- The forecast marts join a run's rows by (city_key, run_id).
create index projection_years_run on analytics.projection_years (city_key, run_id);
create index projection_summaries_run on analytics.projection_summaries (city_key, run_id);

-- Point at each city's latest run already stored (the latest write; run_id breaks a tie,
-- as in the dbt staging ranking it replaces).
insert into analytics.current_projections (city_key, city, run_id, projected_at)
select distinct on (city_key) city_key, city, run_id, projected_at
from analytics.projection_summaries
order by city_key, projected_at desc, run_id desc;
