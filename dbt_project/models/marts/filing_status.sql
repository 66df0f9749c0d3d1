-- Per city and document type: the latest filing received, the latest one that is due by
-- now, and whether the city is overdue (ACFR: 9 months after its fiscal year; CalPERS
-- valuation: a year after its valuation date; both configurable, macros/filing_deadlines.sql).
-- A view, so "overdue" follows the calendar without a rebuild.
{%- set rules = filing_rules() %}

with received as (

    select
        city_key,
        document_type,
        max(fiscal_year) as last_received_fiscal_year,
        string_agg(distinct received_as, ', ' order by received_as) as received_as
    from {{ ref('int_filings_received') }}
    group by city_key, document_type

),

deadlines as (

    {%- for document_type, rule in rules.items() %}
    select
        '{{ document_type }}' as document_type,
        {{ latest_due_year(rule) }} as expected_fiscal_year
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

dated as (

    select
        received.city_key,
        received.document_type,
        received.last_received_fiscal_year,
        received.received_as,
        deadlines.expected_fiscal_year,
        case received.document_type
            {%- for document_type, rule in rules.items() %}
            when '{{ document_type }}'
                then {{ filing_due_date('received.last_received_fiscal_year + 1', rule) }}
            {%- endfor %}
        end as next_due_date
    from received
    inner join deadlines using (document_type)

),

final as (

    select
        dated.city_key || ' | ' || dated.document_type as filing_status_id,
        dated.city_key,
        city_names.city,
        dated.document_type,
        dated.last_received_fiscal_year,
        dated.received_as,
        dated.expected_fiscal_year,
        dated.next_due_date,
        dated.last_received_fiscal_year < dated.expected_fiscal_year as is_overdue,
        greatest(dated.expected_fiscal_year - dated.last_received_fiscal_year, 0)
            as filings_missing,
        case
            when dated.last_received_fiscal_year < dated.expected_fiscal_year
                then current_date - dated.next_due_date
            else 0
        end as days_overdue
    from dated
    left join {{ ref('int_city_counties') }} as city_names using (city_key)

)

select * from final
