{#- Every row of a history table written per run (scores, projections), with the rank of its
    run among the city's runs: 1 is the latest. -#}
{% macro with_run_rank(relation, time_column) %}
with source as (

    select * from {{ relation }}

),

runs as (

    select
        city_key,
        run_id,
        -- run_id breaks a tie of times, so exactly one run of a city ranks first
        dense_rank() over (
            partition by city_key order by max({{ time_column }}) desc, run_id desc
        ) as run_rank
    from source
    group by city_key, run_id

),

final as (

    select
        source.*,
        runs.run_rank
    from source
    inner join runs using (city_key, run_id)

)

select * from final
{% endmacro %}
