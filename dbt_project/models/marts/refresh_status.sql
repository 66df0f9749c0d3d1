-- Per city, where its refresh stands: its sources' last check and health, the documents
-- operators still have to enter, a refresh running now, its last refresh, its latest
-- failure and the reason, the fiscal years it has validated figures for, its filings
-- (ACFR, CalPERS valuation) and whether one is overdue, and its latest score. A view:
-- the ops records it reads change while runs go on.
with cities as (

    select
        city_key,
        city
    from {{ ref('city_fiscal_health') }}
    union
    select
        city_key,
        null as city
    from {{ ref('stg_ops__source_state') }}
    union
    select
        city_key,
        null as city
    from {{ ref('stg_ops__refresh_operations') }}
    union
    select
        city_key,
        null as city
    from {{ ref('stg_ops__refresh_runs') }}
    union
    select
        city_key,
        null as city
    from {{ ref('filing_status') }}

),

sources as (

    select
        city_key,
        count(*) as sources,
        max(last_checked_at) as sources_last_checked_at,
        count(*) filter (where consecutive_failures > 0 or breaker_state <> 'closed')
            as sources_failing,
        count(*) filter (where breaker_state = 'open') as sources_breaker_open
    from {{ ref('stg_ops__source_state') }}
    group by city_key

),

notifications as (

    select
        city_key,
        count(*) filter (where status <> 'completed') as notifications_open,
        min(created_at) filter (where status <> 'completed') as oldest_open_notification_at
    from {{ ref('stg_ops__refresh_notifications') }}
    group by city_key

),

last_refresh as (

    select
        city_key,
        recorded_at,
        status
    from {{ ref('stg_ops__refresh_operations') }}
    where run_rank = 1

),

last_failure as (

    select distinct on (city_key)
        city_key,
        recorded_at,
        stage,
        error
    from {{ ref('stg_ops__refresh_operations') }}
    where status = 'failure'
    order by city_key asc, recorded_at desc, run_id desc

),

running as (

    select distinct on (city_key)
        city_key,
        run_id,
        started_at
    from {{ ref('stg_ops__refresh_runs') }}
    where is_running
    order by city_key asc, started_at desc

),

filings as (

    select
        city_key,
        max(last_received_fiscal_year) filter (where document_type = 'acfr')
            as acfr_last_fiscal_year,
        bool_or(is_overdue) filter (where document_type = 'acfr') as acfr_overdue,
        max(days_overdue) filter (where document_type = 'acfr') as acfr_days_overdue,
        max(last_received_fiscal_year) filter (where document_type = 'calpers_valuation')
            as calpers_valuation_last_year,
        bool_or(is_overdue) filter (where document_type = 'calpers_valuation')
            as calpers_valuation_overdue,
        max(days_overdue) filter (where document_type = 'calpers_valuation')
            as calpers_valuation_days_overdue,
        count(*) filter (where is_overdue) as filings_overdue
    from {{ ref('filing_status') }}
    group by city_key

),

completeness as (

    select
        city_key,
        count(distinct fiscal_year) as fiscal_years_validated,
        min(fiscal_year) as first_fiscal_year,
        max(fiscal_year) as last_fiscal_year,
        string_agg(distinct fiscal_year::text, ', ') as fiscal_years
    from {{ ref('stg_analytics__validated_fiscal_data') }}
    group by city_key

),

final as (

    select
        cities.city_key,
        max(cities.city) as city,
        coalesce(max(sources.sources), 0) as sources,
        max(sources.sources_last_checked_at) as sources_last_checked_at,
        coalesce(max(sources.sources_failing), 0) as sources_failing,
        coalesce(max(sources.sources_breaker_open), 0) as sources_breaker_open,
        coalesce(max(notifications.notifications_open), 0) as notifications_open,
        max(notifications.oldest_open_notification_at) as oldest_open_notification_at,
        count(running.run_id) > 0 as refresh_running,
        max(running.run_id) as running_run_id,
        max(running.started_at) as running_since,
        max(last_refresh.recorded_at) as last_refresh_at,
        max(last_refresh.status) as last_refresh_status,
        max(last_failure.recorded_at) as last_failure_at,
        max(last_failure.stage) as last_failure_stage,
        max(last_failure.error) as last_failure_reason,
        max(completeness.fiscal_years_validated) as fiscal_years_validated,
        max(completeness.fiscal_years) as fiscal_years,
        max(filings.acfr_last_fiscal_year) as acfr_last_fiscal_year,
        coalesce(bool_or(filings.acfr_overdue), false) as acfr_overdue,
        coalesce(max(filings.acfr_days_overdue), 0) as acfr_days_overdue,
        max(filings.calpers_valuation_last_year) as calpers_valuation_last_year,
        coalesce(bool_or(filings.calpers_valuation_overdue), false) as calpers_valuation_overdue,
        coalesce(max(filings.calpers_valuation_days_overdue), 0) as calpers_valuation_days_overdue,
        coalesce(max(filings.filings_overdue), 0) as filings_overdue,
        max(health.fiscal_year) as latest_scored_fiscal_year,
        max(health.overall_points) as latest_overall_points,
        max(health.overall_risk) as latest_overall_risk,
        max(health.scored_at) as latest_scored_at
    from cities
    left join sources using (city_key)
    left join notifications using (city_key)
    left join running using (city_key)
    left join last_refresh using (city_key)
    left join last_failure using (city_key)
    left join filings using (city_key)
    left join completeness using (city_key)
    left join {{ ref('city_fiscal_health') }} as health using (city_key)
    group by cities.city_key

)

select * from final
