-- Every projection run's per-scenario results, ranked per city (1 = latest run).
with source as (

    select * from {{ source('analytics', 'projection_summaries') }}

),

runs as (

    select
        city_key,
        run_id,
        dense_rank() over (partition by city_key order by max(projected_at) desc) as run_rank
    from source
    group by city_key, run_id

),

final as (

    select
        source.*,
        runs.run_rank
    from source
    inner join runs using (city_key, run_id)

)

select * from final
