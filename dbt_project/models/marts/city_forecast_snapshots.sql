{#- One day's copy of marts.city_forecast, kept for backtests. Built by the daily-partitioned
    Dagster asset, which passes the day as the var `snapshot_date`. The pre-hook deletes
    that day and the day's rows are appended, in one transaction, so re-running a day
    replaces exactly that day (even with an empty forecast, which delete+insert would not
    clear) and the delete reads the day through the primary key (dbt's delete+insert
    scanned the whole table: 4.3 million rows at 30 days of 4,770 cities). The post-hook
    applies the retention (var `snapshot_retention_days`, from
    FORECAST_SNAPSHOT_RETENTION_DAYS, default 730 days before today, UTC). Never rebuilt
    from scratch: a --full-refresh would drop the history. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        on_schema_change='append_new_columns',
        pre_hook=[
            "{% if is_incremental() %}delete from {{ this }}"
            ~ " where snapshot_date = {{ snapshot_date() }}{% endif %}"
        ],
        post_hook=[
            "delete from {{ this }} where snapshot_date < "
            ~ "(now() at time zone 'utc')::date - {{ snapshot_retention_days() }}"
        ],
    )
}}

with forecast as (

    select * from {{ ref('city_forecast') }}

),

final as (

    select
        {{ snapshot_date() }} as snapshot_date,
        city_key,
        city,
        scenario,
        base_year,
        years_ahead,
        fiscal_year,
        revenue,
        revenue_low,
        revenue_high,
        expenditures,
        expenditures_low,
        expenditures_high,
        fund_balance,
        fund_balance_low,
        fund_balance_high,
        cliff_year,
        severity,
        base_year_revenue,
        base_year_expenditures,
        base_year_fund_balance,
        methodology_version,
        run_id,
        projected_at,
        -- Last: the incremental table gains them in place (on_schema_change).
        band_lower_quantile,
        band_upper_quantile
    from forecast

)

select * from final
