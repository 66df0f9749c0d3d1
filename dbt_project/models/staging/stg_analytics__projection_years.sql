-- Every projection run's yearly values (history; analytics.current_projections names each
-- city's current run). One plain select, no CTE: see int_projection_rows. New columns go
-- last, so the view is replaced in place (macros/materializations/view.sql).
select
    run_id,
    city_key,
    city,
    scenario,
    base_year,
    k as years_ahead,
    fiscal_year,
    revenue,
    expenditures,
    pension_expenditures,
    fund_balance,
    projected_at,
    methodology_version
from {{ source('analytics', 'projection_years') }}
