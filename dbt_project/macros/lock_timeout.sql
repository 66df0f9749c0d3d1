{#- How long a model's statements wait for a lock, set on its session before it is built.
    Replacing a table or view takes an ACCESS EXCLUSIVE lock, which waits behind any reader:
    a BI session left idle in a transaction would otherwise hold the build, and the
    warehouse_dbt pool slot with it, with no end (benchmarks/RESULTS.md, entry -> marts).
    REFRESH_DBT_LOCK_TIMEOUT, else 60s; a PostgreSQL duration, 0 for no limit. -#}
{% macro set_lock_timeout() %}
    {%- set timeout = env_var('REFRESH_DBT_LOCK_TIMEOUT', '60s') | string -%}
    {%- if not modules.re.match('^\d+(ms|s|min|h)?$', timeout) -%}
        {{ exceptions.raise_compiler_error(
            "REFRESH_DBT_LOCK_TIMEOUT: expected a duration such as 60s, 500ms, 2min or 0 "
            ~ "(no limit), got '" ~ timeout ~ "'") }}
    {%- endif -%}
    set lock_timeout = '{{ timeout }}'
{%- endmacro %}
