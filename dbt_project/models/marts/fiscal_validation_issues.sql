-- The issues of each city's latest validation run: what blocks, what to look at.
with results as (

    select * from {{ ref('stg_ops__validation_results') }}

),

latest_run_per_city as (

    select city_key, max(validated_at) as validated_at
    from results
    group by city_key

),

final as (

    select
        results.city,
        results.fiscal_year,
        results.entry_version,
        results.source_path,
        results.field,
        results.rule,
        results.severity,
        results.value,
        results.message,
        results.run_id,
        results.validated_at
    from results
    inner join latest_run_per_city using (city_key, validated_at)

)

select * from final
