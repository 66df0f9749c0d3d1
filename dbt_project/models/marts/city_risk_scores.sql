-- The latest fiscal-health score of every city-year (California State Auditor's method).
with scores as (

    select * from {{ ref('stg_analytics__risk_scores') }}

),

final as (

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
    from scores
    where run_rank = 1

)

select * from final
