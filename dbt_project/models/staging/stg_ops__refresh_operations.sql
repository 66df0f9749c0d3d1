with source as (

    select * from {{ source('ops', 'refresh_operations') }}

),

final as (

    select
        run_id,
        recorded_at,
        city_key,
        trigger,
        status,
        stage,
        error,
        duration_seconds,
        overall_points,
        overall_risk,
        row_number() over (partition by city_key order by recorded_at desc, run_id desc) as run_rank
    from source

)

select * from final
