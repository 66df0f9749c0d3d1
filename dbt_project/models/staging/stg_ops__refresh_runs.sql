-- Every refresh started, per run and city, with its outcome when the run recorded one.
select
    runs.run_id,
    runs.city_key,
    runs.started_at,
    outcomes.status,
    outcomes.recorded_at as finished_at,
    outcomes.status is null as is_running
from {{ source('ops', 'refresh_runs') }} as runs
left join {{ source('ops', 'refresh_operations') }} as outcomes
    on
        runs.run_id = outcomes.run_id
        and runs.city_key = outcomes.city_key
