-- Every projection run's rows, one per city, fiscal year and scenario, with the band the
-- run's pessimistic and optimistic scenarios draw around each measure, the quantiles that
-- band stands for, and the scenario's summary (cliff, severity, base-year actuals).
--
-- Plain joins of the staging views, without the usual import CTEs: PostgreSQL 18 plans an
-- inlined CTE as a subquery it does not flatten, so a query naming one run (a one-city read
-- of marts.city_forecast) hashed the whole history (30 ms at 477 cities, growing with every
-- run kept) instead of reading that run through the (city_key, run_id) index (under 1 ms).
select
    years.run_id,
    years.city_key,
    years.city,
    years.scenario,
    years.base_year,
    years.years_ahead,
    years.fiscal_year,
    years.revenue,
    least(pessimistic_years.revenue, optimistic_years.revenue) as revenue_low,
    greatest(pessimistic_years.revenue, optimistic_years.revenue) as revenue_high,
    years.expenditures,
    least(pessimistic_years.expenditures, optimistic_years.expenditures)
        as expenditures_low,
    greatest(pessimistic_years.expenditures, optimistic_years.expenditures)
        as expenditures_high,
    years.pension_expenditures,
    years.fund_balance,
    least(pessimistic_years.fund_balance, optimistic_years.fund_balance)
        as fund_balance_low,
    greatest(pessimistic_years.fund_balance, optimistic_years.fund_balance)
        as fund_balance_high,
    years.fund_balance < 0 as is_below_zero,
    summaries.cliff_year,
    coalesce(years.fiscal_year = summaries.cliff_year, false) as is_cliff_year,
    coalesce(summaries.cliff_year - summaries.base_year <= 2, false)
        as cliff_within_2_years,
    coalesce(summaries.cliff_year - summaries.base_year <= 5, false)
        as cliff_within_5_years,
    summaries.cliff_year is not null as cliff_within_10_years,
    summaries.reserve_breach_year,
    summaries.severity,
    summaries.revenue_base as base_year_revenue,
    summaries.expenditures_base as base_year_expenditures,
    summaries.fund_balance_base as base_year_fund_balance,
    -- The year row's own method: every stored year names the one that made it.
    years.methodology_version,
    summaries.entry_version,
    years.projected_at,
    -- Last, so the view is replaced in place (macros/materializations/view.sql).
    summaries.band_lower_quantile,
    summaries.band_upper_quantile
from {{ ref('stg_analytics__projection_years') }} as years
-- The summary of the same run and scenario: a year never meets another run's cliff.
inner join {{ ref('stg_analytics__projection_summaries') }} as summaries
    on
        years.city_key = summaries.city_key
        and years.run_id = summaries.run_id
        and years.scenario = summaries.scenario
inner join {{ ref('stg_analytics__projection_years') }} as pessimistic_years
    on
        years.city_key = pessimistic_years.city_key
        and years.run_id = pessimistic_years.run_id
        and years.fiscal_year = pessimistic_years.fiscal_year
        and pessimistic_years.scenario = 'pessimistic'
inner join {{ ref('stg_analytics__projection_years') }} as optimistic_years
    on
        years.city_key = optimistic_years.city_key
        and years.run_id = optimistic_years.run_id
        and years.fiscal_year = optimistic_years.fiscal_year
        and optimistic_years.scenario = 'optimistic'
