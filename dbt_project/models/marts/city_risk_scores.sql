-- The latest fiscal-health score of every city-year (California State Auditor's method).
-- A view over each city's current scoring: readable as soon as a refresh stores the city's
-- scores, before its dbt build (benchmarks/RESULTS.md, entry -> marts). One plain select,
-- no import CTE, so a one-city read goes through the (city_key, run_id) index
-- (docs/FORECAST_LAYER.md).
select
    city || ' ' || fiscal_year::text as city_fiscal_year_id,
    city_key,
    city,
    fiscal_year,
    overall_points,
    overall_risk,
    gf_reserves_trend,
    {%- for indicator in score_indicator_names() %}
    {{ indicator }}_ratio,
    {{ indicator }}_points,
    {{ indicator }}_risk,
    {%- endfor %}
    methodology_version,
    entry_version,
    scored_at
from {{ ref('stg_analytics__current_risk_scores') }}
