with source as (

    select * from {{ source('analytics', 'validated_fiscal_data') }}

),

final as (

    select
        city || ' ' || fiscal_year::text as city_fiscal_year_id,
        city_key,
        city,
        county,
        fiscal_year,
        {{ fiscal_figure_columns() }},
        entry_version,
        source_kind,
        source_path,
        validated_at
    from source

)

select * from final
