{#- Materialized views are refreshed CONCURRENTLY: readers keep the old rows until the new
    ones are committed, instead of waiting on the ACCESS EXCLUSIVE lock of a plain refresh.
    It needs a unique index on plain columns, which every aggregate declares (config
    `indexes`, unique) and tests. -#}
{% macro postgres__refresh_materialized_view(relation) %}
    refresh materialized view concurrently {{ relation }}
{% endmacro %}
