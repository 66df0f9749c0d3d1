-- The current issues of every city: those of its latest validation. A validation that
-- found nothing leaves its city out, so a fixed entry stops showing its old errors.
with validations as (

    select * from {{ ref('stg_ops__city_validations') }}

),

results as (

    select * from {{ ref('stg_ops__validation_results') }}

),

latest_validations as (

    select
        run_id,
        city_key
    from validations
    where run_rank = 1

),

final as (

    select
        results.city,
        results.fiscal_year,
        results.entry_version,
        results.is_form_problem,
        results.source_path,
        results.field,
        results.rule,
        results.severity,
        results.value,
        results.message,
        results.run_id,
        results.validated_at
    from latest_validations
    -- A run validates many cities: its issues belong to the city they name.
    inner join results using (run_id, city_key)

)

select * from final
