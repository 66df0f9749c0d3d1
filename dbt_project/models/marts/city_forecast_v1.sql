-- Version 1 of marts.city_forecast, the shape BI tools read before the bands: the same rows
-- as the latest version, without its new columns. Kept until its consumers move.
with forecast as (

    select * from {{ ref('city_forecast', v=2) }}

),

final as (

    select
        city,
        scenario,
        base_year,
        years_ahead,
        fiscal_year,
        revenue,
        expenditures,
        pension_expenditures,
        fund_balance,
        cliff_year,
        reserve_breach_year,
        severity,
        methodology_version,
        projected_at
    from forecast

)

select * from final
