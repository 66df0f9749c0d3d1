{#- When a filing is due (the rule lives here only; Python reads marts.filing_status).
    A filing covers a period ending on the last day of `period_end_month` of its year and is
    due `due_months` later, at a month's end: an ACFR for the year to 30 June 2025 is due by
    31 March 2026 (9 months), a CalPERS valuation as of 30 June 2024 by 30 June 2025 (12). -#}

{#- One deadline setting from the environment (lib/runtime passes the validated settings). -#}
{% macro filing_setting(name, default, low, high) %}
    {%- set text = env_var(name, default | string) | string -%}
    {%- if not modules.re.match('^\d+$', text) or text | int < low or text | int > high -%}
        {{ exceptions.raise_compiler_error(
            name ~ ": expected a whole number from " ~ low ~ " to " ~ high ~ ", got '" ~ text ~ "'") }}
    {%- endif -%}
    {{ return(text | int) }}
{%- endmacro %}

{#- Per document type: the month its period ends and the months until it is due. -#}
{% macro filing_rules() %}
    {{ return({
        'acfr': {
            'period_end_month': filing_setting('ACFR_FISCAL_YEAR_END_MONTH', 6, 1, 12),
            'due_months': filing_setting('ACFR_DUE_MONTHS', 9, 1, 36)},
        'calpers_valuation': {
            'period_end_month': 6,
            'due_months': filing_setting('CALPERS_VALUATION_DUE_MONTHS', 12, 1, 36)},
    }) }}
{%- endmacro %}

{#- The day the filing of period `year_sql` is due at the latest. -#}
{% macro filing_due_date(year_sql, rule) -%}
    (make_date({{ year_sql }}, {{ rule.period_end_month }}, 1)
        + interval '{{ rule.due_months + 1 }} months' - interval '1 day')::date
{%- endmacro %}

{#- The latest period whose filing was due before today: its due date (the month start
    after it, minus a day) is before today when that month start is at most today. -#}
{% macro latest_due_year(rule) -%}
    (extract(year from current_date - interval '{{ rule.due_months + 1 }} months')::integer
        - case
            when extract(month from current_date - interval '{{ rule.due_months + 1 }} months')
                < {{ rule.period_end_month }} then 1
            else 0
        end)
{%- endmacro %}
