{{ config(
    materialized='materialized_view',
    on_configuration_change='apply',
    indexes=[{'columns': ['geography_level', 'geography', 'base_year', 'scenario'], 'unique': true}],
) }}

-- Statewide and per county, per base year and scenario: how many cities reach a fiscal cliff
-- within 2, 5 and 10 years, and the yearly amount that would close their gaps.
with summaries as (

    select * from {{ ref('int_current_projection_summaries') }}

),

counties as (

    select * from {{ ref('int_city_counties') }}

),

final as (

    select
        {{ state_and_county_columns('counties.county') }},
        summaries.base_year,
        summaries.scenario,
        count(*)::integer as cities,
        count(*) filter (where summaries.cliff_year - summaries.base_year <= 2)::integer
            as cities_with_cliff_within_2_years,
        count(*) filter (where summaries.cliff_year - summaries.base_year <= 5)::integer
            as cities_with_cliff_within_5_years,
        count(*) filter (where summaries.cliff_year is not null)::integer
            as cities_with_cliff_within_10_years,
        sum(summaries.gap_to_close) as total_gap_to_close
    from summaries
    inner join counties on summaries.city_key = counties.city_key
    group by
        {{ state_and_county_groups(
            'counties.county', ['summaries.base_year', 'summaries.scenario']
        ) }}

)

select * from final
