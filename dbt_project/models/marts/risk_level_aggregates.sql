{{ config(
    materialized='materialized_view',
    on_configuration_change='apply',
    indexes=[{'columns': ['geography_level', 'geography', 'fiscal_year', 'overall_risk'], 'unique': true}],
) }}

-- Statewide and per county, per fiscal year: cities by the State Auditor's overall risk
-- level (each city-year's latest score).
with scores as (

    select * from {{ ref('stg_analytics__risk_scores') }}
    where run_rank = 1

),

counties as (

    select * from {{ ref('int_city_counties') }}

),

final as (

    select
        {{ state_and_county_columns('counties.county') }},
        scores.fiscal_year,
        scores.overall_risk,
        count(*)::integer as cities,
        avg(scores.overall_points)::double precision as mean_overall_points
    from scores
    inner join counties on scores.city_key = counties.city_key
    group by
        {{ state_and_county_groups(
            'counties.county', ['scores.fiscal_year', 'scores.overall_risk']
        ) }}

)

select * from final
