-- Each city's latest fiscal-health score, every indicator, beside its previous fiscal
-- year's score and the change: what a dashboard's "where does each city stand" reads.
with scores as (

    select * from {{ ref('city_risk_scores') }}

),

ranked as (

    select
        *,
        row_number() over (partition by city_key order by fiscal_year desc) as year_rank,
        lead(fiscal_year)
            over (partition by city_key order by fiscal_year desc)
            as previous_fiscal_year,
        lead(overall_points)
            over (partition by city_key order by fiscal_year desc)
            as previous_overall_points,
        lead(overall_risk)
            over (partition by city_key order by fiscal_year desc)
            as previous_overall_risk
    from scores

),

final as (

    select
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
        -- The previous score is the one of the year before, when the city has it.
        case when previous_fiscal_year = fiscal_year - 1 then previous_fiscal_year end
            as previous_fiscal_year,
        case when previous_fiscal_year = fiscal_year - 1 then previous_overall_points end
            as previous_overall_points,
        case when previous_fiscal_year = fiscal_year - 1 then previous_overall_risk end
            as previous_overall_risk,
        case
            when previous_fiscal_year = fiscal_year - 1
                then overall_points - previous_overall_points
        end as overall_points_change,
        methodology_version,
        entry_version,
        scored_at
    from ranked
    where year_rank = 1

)

select * from final
