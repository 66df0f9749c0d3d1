with source as (

    select * from {{ source('ops', 'source_state') }}

),

final as (

    select
        source_id,
        city_key,
        url,
        last_checked_at,
        last_success_at,
        consecutive_failures,
        breaker_state,
        breaker_open_until
    from source

)

select * from final
