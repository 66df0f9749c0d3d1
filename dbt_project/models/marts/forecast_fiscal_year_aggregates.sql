{{ config(
    materialized='materialized_view',
    on_configuration_change='apply',
    indexes=[{'columns': ['geography_level', 'geography', 'fiscal_year', 'scenario'], 'unique': true}],
) }}

-- Statewide and per county, per projected fiscal year and scenario: the cities projected,
-- those below zero, and the total projected shortfall (the sum of negative fund balances).
with forecast as (

    select * from {{ ref('city_forecast') }}

),

counties as (

    select * from {{ ref('int_city_counties') }}

),

final as (

    select
        {{ state_and_county_columns('counties.county') }},
        forecast.fiscal_year,
        forecast.scenario,
        count(*)::integer as cities,
        count(*) filter (where forecast.is_below_zero)::integer as cities_below_zero,
        count(*) filter (where forecast.cliff_within_2_years)::integer
            as cities_with_cliff_within_2_years,
        count(*) filter (where forecast.cliff_within_5_years)::integer
            as cities_with_cliff_within_5_years,
        count(*) filter (where forecast.cliff_within_10_years)::integer
            as cities_with_cliff_within_10_years,
        coalesce(sum(-forecast.fund_balance) filter (where forecast.is_below_zero), 0)
            as total_projected_shortfall,
        sum(forecast.revenue) as total_revenue,
        sum(forecast.expenditures) as total_expenditures,
        sum(forecast.fund_balance) as total_fund_balance
    from forecast
    inner join counties on forecast.city_key = counties.city_key
    group by
        {{ state_and_county_groups(
            'counties.county', ['forecast.fiscal_year', 'forecast.scenario']
        ) }}

)

select * from final
