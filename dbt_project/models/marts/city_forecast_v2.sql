-- Each city's current ten-year projection, year by year and scenario by scenario, with the
-- band of every measure and the quantiles it stands for, the scenario's cliff and the
-- base-year actuals. The current run comes from analytics.current_projections (one row per
-- city), and its rows through the (city_key, run_id) indexes: a one-city read touches that
-- city's rows only. No import CTEs, for the reason given in int_projection_rows.
select
    current_runs.city_key,
    current_runs.city,
    projection_rows.scenario,
    projection_rows.base_year,
    projection_rows.years_ahead,
    projection_rows.fiscal_year,
    projection_rows.revenue,
    projection_rows.revenue_low,
    projection_rows.revenue_high,
    projection_rows.expenditures,
    projection_rows.expenditures_low,
    projection_rows.expenditures_high,
    projection_rows.pension_expenditures,
    projection_rows.fund_balance,
    projection_rows.fund_balance_low,
    projection_rows.fund_balance_high,
    projection_rows.is_below_zero,
    projection_rows.is_cliff_year,
    projection_rows.cliff_year,
    projection_rows.cliff_within_2_years,
    projection_rows.cliff_within_5_years,
    projection_rows.cliff_within_10_years,
    projection_rows.reserve_breach_year,
    projection_rows.severity,
    projection_rows.base_year_revenue,
    projection_rows.base_year_expenditures,
    projection_rows.base_year_fund_balance,
    projection_rows.methodology_version,
    projection_rows.entry_version,
    current_runs.run_id,
    current_runs.projected_at,
    -- Added last, so the view is replaced in place and its dependents stay (see
    -- macros/materializations/view.sql); adding columns keeps the contract of v2.
    projection_rows.band_lower_quantile,
    projection_rows.band_upper_quantile
from {{ ref('stg_analytics__current_projections') }} as current_runs
inner join {{ ref('int_projection_rows') }} as projection_rows
    on
        current_runs.city_key = projection_rows.city_key
        and current_runs.run_id = projection_rows.run_id
