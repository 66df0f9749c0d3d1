-- One row per entry version and figure (long form), with the value the same source
-- reported before for the same city-year, to see what each version changed.
with entries as (

    select * from {{ ref('stg_raw__fiscal_entries') }}

),

long_form as (

    select
        entries.entry_version,
        entries.city,
        entries.fiscal_year,
        entries.source_kind,
        entries.source_path,
        entries.loaded_at,
        figure.key as figure,
        figure.value #>> '{}' as value_text
    from entries
    cross join lateral jsonb_each(
        jsonb_build_object(
            {%- for name in fiscal_figure_names() %}
            '{{ name }}', entries.{{ name }}{{ ',' if not loop.last }}
            {%- endfor %}
        )
    ) as figure

),

final as (

    select
        entry_version,
        city,
        fiscal_year,
        source_kind,
        source_path,
        loaded_at,
        figure,
        value_text::numeric as value,
        lag(entry_version) over by_city_year_figure as previous_entry_version,
        lag(value_text::numeric) over by_city_year_figure as previous_value
    from long_form
    window by_city_year_figure as (
        partition by city, fiscal_year, figure order by entry_version
    )

)

select * from final
