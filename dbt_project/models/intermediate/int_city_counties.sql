-- Each city's county, as its latest validated fiscal year names it.
with validated as (

    select * from {{ ref('stg_analytics__validated_fiscal_data') }}

),

final as (

    select distinct on (city_key)
        city_key,
        city,
        coalesce(county, 'Unknown') as county
    from validated
    order by city_key asc, fiscal_year desc

)

select * from final
