with source as (

    select * from {{ source('ops', 'source_documents') }}

),

final as (

    select
        document_id,
        source_id,
        city_key,
        doc_type as document_type,
        fiscal_year,
        url,
        title,
        status,
        first_seen_at
    from source

)

select * from final
