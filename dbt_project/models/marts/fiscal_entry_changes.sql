-- What each new version of a city-year's figures changed, figure by figure: corrections
-- of an entry file, and restatements (a later source reporting a different value).
with figures as (

    select * from {{ ref('int_fiscal_entry_figures') }}

),

final as (

    select
        city,
        fiscal_year,
        figure,
        previous_entry_version,
        entry_version,
        previous_value,
        value,
        value - previous_value as change,
        source_kind,
        source_path,
        loaded_at
    from figures
    where
        previous_entry_version is not null
        and value is distinct from previous_value

)

select * from final
