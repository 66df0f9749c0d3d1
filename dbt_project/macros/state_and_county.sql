{#- The aggregates' rows for the whole state and for each county, from one GROUPING SETS
    query: `state_and_county_columns` names the row's level ('state' or 'county') and
    geography ('California' or the county), `state_and_county_groups` groups by `columns`
    alone (the state) and with the county. -#}
{% macro state_and_county_columns(county) %}
    case when grouping({{ county }}) = 1 then 'state' else 'county' end as geography_level,
    coalesce({{ county }}, 'California') as geography
{%- endmacro %}

{% macro state_and_county_groups(county, columns) %}
    grouping sets (
        ({{ columns | join(', ') }}),
        ({{ county }}, {{ columns | join(', ') }})
    )
{%- endmacro %}
