with source as (

    select * from {{ source('raw', 'state_auditor_fiscal_inputs') }}

),

final as (

    select
        city || ' ' || fiscal_year::text as city_fiscal_year_id,
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
        -- A bulk row with neither government-wide revenues nor GF expenditures is a city that
        -- filed no audited statements that year (Compton 2017, 2018, 2020).
        (government_wide_revenues is null and gf_expenditures_and_transfers_out is null)
            as audited_statements_missing,
        source_file,
        source_checksum,
        source_row,
        loaded_at
    from source

)

select * from final
