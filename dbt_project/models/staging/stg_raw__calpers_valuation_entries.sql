with source as (

    select * from {{ source('raw', 'calpers_valuation_entries') }}

),

final as (

    select
        valuation_version,
        city_key,
        city,
        plan_key,
        valuation_date,
        extract(year from valuation_date)::integer as valuation_year,
        funded_ratio,
        unfunded_accrued_liability,
        entered_at,
        ingested_at
    from source

)

select * from final
