with source as (

    select * from {{ source('raw', 'fiscal_entries') }}

),

final as (

    select
        entry_version,
        city_key,
        city,
        county,
        fiscal_year,
        {{ fiscal_figure_columns() }},
        source_kind,
        source_path,
        source_checksum,
        document_title,
        document_url,
        document_pages,
        entered_by,
        entered_at,
        notes,
        loaded_at
    from source

)

select * from final
