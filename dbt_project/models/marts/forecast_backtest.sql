-- Every stored snapshot's base-scenario forecasts against the actuals validated later
-- (METHODOLOGY.md §3, "from snapshots"): per snapshot day, method, measure and horizon, the
-- WAPE, bias and band coverage, beside naive persistence (the base year's actual carried
-- forward). The sums are kept so a BI tool can pool days or horizons correctly.
with snapshots as (

    select * from {{ ref('city_forecast_snapshots') }}
    where scenario = 'base'

),

actuals as (

    select
        city_key,
        fiscal_year,
        gf_revenues::double precision as revenue,
        gf_expenditures_and_transfers_out::double precision as expenditures,
        gf_unrestricted_fund_balance::double precision as fund_balance
    from {{ ref('stg_analytics__validated_fiscal_data') }}

),

-- One row per snapshot forecast and measure that an actual can judge: a later fiscal year
-- than the forecast's base year, with the measure reported.
pairs as (

    select
        snapshots.snapshot_date,
        snapshots.methodology_version,
        snapshots.band_upper_quantile - snapshots.band_lower_quantile as band_claimed_coverage,
        measures.measure,
        snapshots.years_ahead,
        measures.forecast,
        measures.band_low,
        measures.band_high,
        measures.persistence,
        measures.actual
    from snapshots
    inner join actuals
        on
            snapshots.city_key = actuals.city_key
            and snapshots.fiscal_year = actuals.fiscal_year
    cross join
        lateral (
            values
            (
                'revenue', snapshots.revenue, snapshots.revenue_low, snapshots.revenue_high,
                snapshots.base_year_revenue, actuals.revenue
            ),
            (
                'expenditures', snapshots.expenditures, snapshots.expenditures_low,
                snapshots.expenditures_high, snapshots.base_year_expenditures,
                actuals.expenditures
            ),
            (
                'fund_balance', snapshots.fund_balance, snapshots.fund_balance_low,
                snapshots.fund_balance_high, snapshots.base_year_fund_balance,
                actuals.fund_balance
            )
        ) as measures (measure, forecast, band_low, band_high, persistence, actual)
    where
        snapshots.fiscal_year > snapshots.base_year
        and measures.actual is not null
        and measures.persistence is not null

),

sums as (

    select
        snapshot_date,
        methodology_version,
        measure,
        years_ahead,
        count(*)::integer as forecasts,
        sum(abs(forecast - actual)) as sum_absolute_error,
        sum(forecast - actual) as sum_error,
        sum(abs(actual)) as sum_absolute_actual,
        sum(abs(persistence - actual)) as persistence_sum_absolute_error,
        sum(persistence - actual) as persistence_sum_error,
        count(*) filter (where actual between band_low and band_high)::integer
            as actuals_in_band,
        -- One method, one band: every forecast of the group claims the same coverage.
        max(band_claimed_coverage) as band_claimed_coverage
    from pairs
    group by snapshot_date, methodology_version, measure, years_ahead

),

final as (

    select
        snapshot_date,
        methodology_version,
        measure,
        years_ahead,
        forecasts,
        sum_absolute_error / nullif(sum_absolute_actual, 0) as wape,
        sum_error / nullif(sum_absolute_actual, 0) as bias,
        actuals_in_band::double precision / forecasts as band_coverage,
        band_claimed_coverage,
        persistence_sum_absolute_error / nullif(sum_absolute_actual, 0) as persistence_wape,
        persistence_sum_error / nullif(sum_absolute_actual, 0) as persistence_bias,
        sum_absolute_error < persistence_sum_absolute_error as beats_persistence,
        actuals_in_band,
        sum_absolute_error,
        sum_error,
        sum_absolute_actual,
        persistence_sum_absolute_error
    from sums

)

select * from final
