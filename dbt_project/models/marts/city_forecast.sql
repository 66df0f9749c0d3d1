-- The latest ten-year projection of every city, year by year and scenario by scenario,
-- beside that scenario's fiscal-cliff year (methodology v1.1).
with years as (

    select * from {{ ref('stg_analytics__projection_years') }}

),

summaries as (

    select * from {{ ref('stg_analytics__projection_summaries') }}

),

latest_years as (

    select *
    from years
    where run_rank = 1

),

-- Filtered like the years: joining the whole summary history made PostgreSQL rank and
-- join every run ever kept (230 s for the uniqueness test at 4,770 cities).
latest_summaries as (

    select *
    from summaries
    where run_rank = 1

),

final as (

    select
        latest_years.city,
        latest_years.scenario,
        latest_years.base_year,
        latest_years.k as years_ahead,
        latest_years.fiscal_year,
        latest_years.revenue,
        latest_years.expenditures,
        latest_years.pension_expenditures,
        latest_years.fund_balance,
        latest_summaries.cliff_year,
        latest_summaries.reserve_breach_year,
        latest_summaries.severity,
        latest_summaries.methodology_version,
        latest_years.projected_at
    from latest_years
    -- The summary of the same run: a year never meets another run's cliff year.
    inner join latest_summaries using (city_key, run_id, scenario)

)

select * from final
