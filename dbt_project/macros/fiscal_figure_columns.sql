{#- The data dictionary's figures (refresh_assets/lib/fiscal_inputs.py FIELDS without city,
    county and fiscal_year), in order; tests/unit/test_dbt_lists.py keeps the two equal. -#}
{% macro fiscal_figure_names() -%}
    {{ return([
        'population',
        'gf_revenues', 'gf_revenues_prior_year', 'gf_revenues_two_years_prior',
        'gf_unrestricted_fund_balance', 'gf_unrestricted_fund_balance_prior_year',
        'gf_unrestricted_fund_balance_two_years_prior',
        'gf_expenditures_and_transfers_out', 'gf_cash_and_investments', 'gf_liabilities',
        'long_term_obligations_excl_retirement', 'government_wide_revenues',
        'net_pension_liability', 'pension_related_debt', 'pension_plan_assets',
        'total_pension_liability', 'pension_contribution_required',
        'pension_contribution_projected', 'net_opeb_liability', 'opeb_funded_ratio',
    ]) }}
{%- endmacro %}

{% macro fiscal_figure_columns(relation_alias=none) -%}
    {%- for name in fiscal_figure_names() -%}
        {{ relation_alias ~ '.' if relation_alias else '' }}{{ name }}{{ ',\n        ' if not loop.last }}
    {%- endfor -%}
{%- endmacro %}
