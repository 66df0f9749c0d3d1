-- Every scoring, with the rank of its run among the city's scorings (1 = latest).
with source as (

    select * from {{ source('analytics', 'risk_scores') }}

),

runs as (

    select
        city_key,
        run_id,
        dense_rank() over (partition by city_key order by max(scored_at) desc) as run_rank
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
