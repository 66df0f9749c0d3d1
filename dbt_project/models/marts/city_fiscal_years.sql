with validated as (

    select * from {{ ref('stg_analytics__validated_fiscal_data') }}

),

final as (

    select
        city_fiscal_year_id,
        city_key,
        city,
        county,
        fiscal_year,
        {{ fiscal_figure_columns() }},
        -- Neither government-wide revenues nor GF expenditures: the city filed no audited
        -- statements that year (Compton 2017, 2018, 2020). Kept, and scored as missing.
        (government_wide_revenues is null and gf_expenditures_and_transfers_out is null)
            as audited_statements_missing,
        gf_revenues / nullif(population, 0) as gf_revenues_per_capita,
        entry_version,
        source_kind,
        source_path,
        validated_at
    from validated

)

select * from final
