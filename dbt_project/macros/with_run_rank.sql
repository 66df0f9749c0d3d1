{#- Every row of a history table written per run (scores, projections), with the rank of its
    run among the city's runs: 1 is the latest. Window functions over one scan of the table:
    a CTE read twice (rows joined back to their runs) is materialized without statistics,
    and PostgreSQL then joined two such views row by row (over 10 minutes at 4,770 cities). -#}
{% macro with_run_rank(relation, time_column) %}
with source as (

    select * from {{ relation }}

),

timed as (

    select
        source.*,
        -- when the run wrote its last row for the city
        max({{ time_column }}) over (partition by city_key, run_id) as run_recorded_at
    from source

),

final as (

    select
        timed.*,
        -- run_id breaks a tie of times, so exactly one run of a city ranks first
        dense_rank() over (
            partition by city_key order by run_recorded_at desc, run_id desc
        ) as run_rank
    from timed

)

select * from final
{% endmacro %}
