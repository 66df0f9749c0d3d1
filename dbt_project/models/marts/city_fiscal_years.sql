with fiscal_inputs as (

    select * from {{ ref('stg_state_auditor__fiscal_inputs') }}

),

final as (

    select
        city_fiscal_year_id,
        city,
        county,
        fiscal_year,
        population,
        gf_revenues,
        gf_revenues_prior_year,
        gf_revenues_two_years_prior,
        gf_unrestricted_fund_balance,
        gf_unrestricted_fund_balance_prior_year,
        gf_unrestricted_fund_balance_two_years_prior,
        gf_expenditures_and_transfers_out,
        gf_cash_and_investments,
        gf_liabilities,
        long_term_obligations_excl_retirement,
        government_wide_revenues,
        net_pension_liability,
        pension_related_debt,
        pension_plan_assets,
        total_pension_liability,
        pension_contribution_required,
        pension_contribution_projected,
        net_opeb_liability,
        opeb_funded_ratio,
        audited_statements_missing,
        gf_revenues / nullif(population, 0) as gf_revenues_per_capita,
        loaded_at
    from fiscal_inputs

)

select * from final
