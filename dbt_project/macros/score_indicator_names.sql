{#- The State Auditor's ten indicators (refresh_assets/lib/scoring.py INDICATORS), in order;
    each has `_ratio`, `_points` and `_risk` columns in analytics.risk_scores.
    tests/unit/test_dbt_lists.py keeps this list equal to the Python one. -#}
{% macro score_indicator_names() -%}
    {{ return([
        'general_fund_reserves', 'debt_burden', 'liquidity', 'revenue_trends',
        'pension_obligations', 'pension_funding', 'pension_costs',
        'future_pension_costs', 'opeb_obligations', 'opeb_funding',
    ]) }}
{%- endmacro %}
