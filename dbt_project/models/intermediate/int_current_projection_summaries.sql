-- Each city's current projection run, per scenario: the summary rows of the run that
-- analytics.current_projections names (read through the (city_key, run_id) index).
with current_runs as (

    select * from {{ ref('stg_analytics__current_projections') }}

),

summaries as (

    select * from {{ ref('stg_analytics__projection_summaries') }}

),

final as (

    select summaries.*
    from current_runs
    inner join summaries
        on
            current_runs.city_key = summaries.city_key
            and current_runs.run_id = summaries.run_id

)

select * from final
