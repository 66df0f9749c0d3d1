with source as (

    select * from {{ source('ops', 'validation_results') }}

),

final as (

    select
        run_id,
        validated_at,
        city_key,
        city,
        -- Both null for a form problem (an entry file that did not parse); the fiscal year
        -- is read from the file name when it is `<year>.yaml`.
        fiscal_year,
        entry_version,
        entry_version is null as is_form_problem,
        source_path,
        field,
        rule,
        severity,
        value,
        message
    from source

)

select * from final
