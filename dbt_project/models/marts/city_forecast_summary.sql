-- Per city and scenario: base year, fiscal-cliff year, reserve-breach year, severity, the
-- gap to close and every assumption behind them (each city's current projection).
with summaries as (

    select * from {{ ref('int_current_projection_summaries') }}

),

final as (

    select
        city,
        scenario,
        base_year,
        revenue_base,
        expenditures_base,
        fund_balance_base,
        below_zero_at_base,
        cliff_year,
        reserve_breach_year,
        severity,
        gap_to_close,
        gap_share_of_expenditures,
        gap_share_of_revenue,
        fund_balance_year_10,
        g_city,
        n_rates,
        m_t0,
        g,
        s,
        phi,
        pension_base,
        pension_schedule_source,
        anchor,
        sigma_revenue,
        sigma_expenditures,
        sigma_fund_balance,
        band_lower_quantile,
        band_upper_quantile,
        methodology_version,
        entry_version,
        projected_at
    from summaries

)

select * from final
