with source as (

    select * from {{ source('ops', 'refresh_notifications') }}

),

final as (

    select
        notification_id,
        city_key,
        doc_type,
        fiscal_year,
        status,
        email_status,
        created_at,
        completed_at
    from source

)

select * from final
