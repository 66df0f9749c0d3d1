with source as (

    select * from {{ source('ops', 'validation_results') }}

),

final as (

    select
        run_id,
        validated_at,
        city_key,
        city,
        fiscal_year,
        entry_version,
        source_path,
        field,
        rule,
        severity,
        value,
        message
    from source

)

select * from final
