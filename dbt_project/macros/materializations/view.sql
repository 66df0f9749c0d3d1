{#- Views are replaced in place (CREATE OR REPLACE VIEW) when their columns stay as they were
    (new ones may be added at the end), instead of dbt's default: build a new view, swap the
    names, DROP ... CASCADE the old one. PostgreSQL binds a dependent view or materialized
    view to the old relation, so that cascade dropped marts.city_forecast_v1 and the
    aggregates every time a refresh rebuilt a view upstream of them, and BI tools saw them
    missing until the next full build. A changed or removed column, a --full-refresh, or a
    table in the view's place take the default path, whose cascade the same build repairs
    by building the dependents after it. -#}
{% materialization view, adapter='postgres' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- if existing_relation is none or not existing_relation.is_view or should_full_refresh()
          or not view_columns_kept(existing_relation, sql) -%}
        {{ return(materialization_view_default()) }}
    {%- endif -%}

    {%- set target_relation = this.incorporate(type='view') -%}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}
    {% call statement('main') -%}
        {{ get_replace_view_sql(target_relation, sql) }}
    {%- endcall %}
    {% do apply_grants(target_relation, config.get('grants'), should_revoke=True) %}
    {% do persist_docs(target_relation, model) %}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#- True when the view's current columns are the first columns of the new query, same names
    and types, in the same order: the only change CREATE OR REPLACE VIEW accepts. -#}
{% macro view_columns_kept(existing_relation, sql) %}
    {#- Both described by the same query path, so their type names compare. -#}
    {%- set current = get_column_schema_from_query('select * from ' ~ existing_relation) -%}
    {%- set proposed = get_column_schema_from_query(sql) -%}
    {%- if proposed | length < current | length -%}
        {{ return(false) }}
    {%- endif -%}
    {%- for column in current -%}
        {%- set replacement = proposed[loop.index0] -%}
        {%- if column.name != replacement.name or column.data_type != replacement.data_type -%}
            {{ return(false) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(true) }}
{% endmacro %}
