-- The latest ten-year projection of every city, year by year and scenario by scenario,
-- beside that scenario's fiscal-cliff year (methodology v1.1).
with years as (

    select * from {{ ref('stg_analytics__projection_years') }}
    where run_rank = 1

),

summaries as (

    select * from {{ ref('stg_analytics__projection_summaries') }}
    where run_rank = 1

),

final as (

    select
        years.city,
        years.scenario,
        years.base_year,
        years.k as years_ahead,
        years.fiscal_year,
        years.revenue,
        years.expenditures,
        years.pension_expenditures,
        years.fund_balance,
        summaries.cliff_year,
        summaries.reserve_breach_year,
        summaries.severity,
        summaries.methodology_version,
        years.projected_at
    from years
    inner join summaries using (city_key, run_id, scenario)

)

select * from final
