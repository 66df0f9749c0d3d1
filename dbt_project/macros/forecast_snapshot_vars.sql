{#- The vars of marts.city_forecast_snapshots, checked so that a typo fails the build with a
    message instead of snapshotting the wrong day or deleting history. -#}

{#- The day to snapshot (YYYY-MM-DD); today (UTC, when the run started) if not given. -#}
{% macro snapshot_date() %}
    {%- set day = var('snapshot_date', run_started_at.strftime('%Y-%m-%d')) | string -%}
    {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', day) -%}
        {{ exceptions.raise_compiler_error(
            "var snapshot_date: expected a day as YYYY-MM-DD, got '" ~ day ~ "'") }}
    {%- endif -%}
    date '{{ day }}'
{%- endmacro %}

{#- Days of snapshots kept before today: var snapshot_retention_days, else
    FORECAST_SNAPSHOT_RETENTION_DAYS, else 730; a whole number of at least 1. -#}
{% macro snapshot_retention_days() %}
    {%- set days = var('snapshot_retention_days',
                       env_var('FORECAST_SNAPSHOT_RETENTION_DAYS', '730')) | string -%}
    {%- if not modules.re.match('^\d+$', days) or days | int < 1 -%}
        {{ exceptions.raise_compiler_error(
            "FORECAST_SNAPSHOT_RETENTION_DAYS (var snapshot_retention_days): expected a whole "
            ~ "number of days of at least 1, got '" ~ days ~ "'") }}
    {%- endif -%}
    {{ days | int }}
{%- endmacro %}
