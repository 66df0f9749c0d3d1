-- 0001: the warehouse as it stood before numbered migrations (issues 2-4): schemas, the
-- append-only raw entries, validated data, scores, medians, projections and the ops records.
-- Written with `if not exists` so that a warehouse created before migrations existed is
-- adopted as it is.
create schema if not exists raw;
create schema if not exists analytics;
create schema if not exists staging;
create schema if not exists intermediate;
create schema if not exists marts;
create schema if not exists ops;
create table if not exists raw.fiscal_entries (
    entry_version bigint generated always as identity primary key,
    city_key text not null,
    city text not null,
    county text,
    fiscal_year integer,
    population integer,
    gf_revenues numeric,
    gf_revenues_prior_year numeric,
    gf_revenues_two_years_prior numeric,
    gf_unrestricted_fund_balance numeric,
    gf_unrestricted_fund_balance_prior_year numeric,
    gf_unrestricted_fund_balance_two_years_prior numeric,
    gf_expenditures_and_transfers_out numeric,
    gf_cash_and_investments numeric,
    gf_liabilities numeric,
    long_term_obligations_excl_retirement numeric,
    government_wide_revenues numeric,
    net_pension_liability numeric,
    pension_related_debt numeric,
    pension_plan_assets numeric,
    total_pension_liability numeric,
    pension_contribution_required numeric,
    pension_contribution_projected numeric,
    net_opeb_liability numeric,
    opeb_funded_ratio numeric,
    source_kind text not null check (source_kind in ('entry_file', 'bulk_import')),
    source_path text not null,
    source_checksum text not null,
    document_title text,
    document_url text,
    document_pages jsonb,
    entered_by text,
    entered_at timestamptz,
    notes text,
    loaded_at timestamptz not null default now()
);
create index if not exists fiscal_entries_city_key on raw.fiscal_entries (city_key);
create index if not exists fiscal_entries_source_path
    on raw.fiscal_entries (source_path, entry_version desc);

create table if not exists analytics.validated_fiscal_data (
    city_key text not null,
    city text not null,
    county text,
    fiscal_year integer,
    population integer,
    gf_revenues numeric,
    gf_revenues_prior_year numeric,
    gf_revenues_two_years_prior numeric,
    gf_unrestricted_fund_balance numeric,
    gf_unrestricted_fund_balance_prior_year numeric,
    gf_unrestricted_fund_balance_two_years_prior numeric,
    gf_expenditures_and_transfers_out numeric,
    gf_cash_and_investments numeric,
    gf_liabilities numeric,
    long_term_obligations_excl_retirement numeric,
    government_wide_revenues numeric,
    net_pension_liability numeric,
    pension_related_debt numeric,
    pension_plan_assets numeric,
    total_pension_liability numeric,
    pension_contribution_required numeric,
    pension_contribution_projected numeric,
    net_opeb_liability numeric,
    opeb_funded_ratio numeric,
    entry_version bigint not null,
    source_kind text not null,
    source_path text not null,
    validated_at timestamptz not null default now(),
    primary key (city, fiscal_year)
);

create table if not exists ops.validation_results (
    run_id text not null,
    validated_at timestamptz not null default now(),
    city_key text not null,
    city text not null,
    fiscal_year integer not null,
    entry_version bigint not null,
    source_path text not null,
    field text not null,
    rule text not null,
    severity text not null check (severity in ('error', 'warning', 'info')),
    value text,
    message text not null
);
create index if not exists validation_results_city on ops.validation_results (city_key);

create table if not exists analytics.risk_scores (
    run_id text not null,
    scored_at timestamptz not null default now(),
    city_key text not null,
    city text not null,
    fiscal_year integer not null,
    entry_version bigint,
    methodology_version text not null,
    overall_points numeric(6, 2) not null,
    overall_risk text not null,
    gf_reserves_trend numeric(16, 2),
    general_fund_reserves_ratio numeric(16, 2),
    general_fund_reserves_points numeric(6, 2) not null,
    general_fund_reserves_risk text not null,
    debt_burden_ratio numeric(16, 2),
    debt_burden_points numeric(6, 2) not null,
    debt_burden_risk text not null,
    liquidity_ratio numeric(16, 2),
    liquidity_points numeric(6, 2) not null,
    liquidity_risk text not null,
    revenue_trends_ratio numeric(16, 2),
    revenue_trends_points numeric(6, 2) not null,
    revenue_trends_risk text not null,
    pension_obligations_ratio numeric(16, 2),
    pension_obligations_points numeric(6, 2) not null,
    pension_obligations_risk text not null,
    pension_funding_ratio numeric(16, 2),
    pension_funding_points numeric(6, 2) not null,
    pension_funding_risk text not null,
    pension_costs_ratio numeric(16, 2),
    pension_costs_points numeric(6, 2) not null,
    pension_costs_risk text not null,
    future_pension_costs_ratio numeric(16, 2),
    future_pension_costs_points numeric(6, 2) not null,
    future_pension_costs_risk text not null,
    opeb_obligations_ratio numeric(16, 2),
    opeb_obligations_points numeric(6, 2) not null,
    opeb_obligations_risk text not null,
    opeb_funding_ratio numeric(16, 2),
    opeb_funding_points numeric(6, 2) not null,
    opeb_funding_risk text not null
);
create index if not exists risk_scores_city on analytics.risk_scores (city_key, scored_at);

create table if not exists analytics.statewide_growth_medians (
    run_id text not null,
    computed_at timestamptz not null default now(),
    base_year integer not null,
    median_growth double precision,
    cities integer not null
);

create table if not exists analytics.projection_years (
    run_id text not null,
    projected_at timestamptz not null default now(),
    city_key text not null,
    city text not null,
    scenario text not null,
    base_year integer not null,
    k integer not null,
    fiscal_year integer not null,
    revenue double precision not null,
    expenditures double precision not null,
    pension_expenditures double precision not null,
    fund_balance double precision not null
);
create index if not exists projection_years_city
    on analytics.projection_years (city_key, projected_at);

create table if not exists analytics.projection_summaries (
    run_id text not null,
    projected_at timestamptz not null default now(),
    city_key text not null,
    city text not null,
    scenario text not null,
    base_year integer not null,
    revenue_base double precision not null,
    expenditures_base double precision not null,
    fund_balance_base double precision not null,
    below_zero_at_base boolean not null,
    cliff_year integer,
    reserve_breach_year integer,
    severity text not null,
    gap_to_close double precision not null,
    gap_share_of_expenditures double precision,
    gap_share_of_revenue double precision,
    fund_balance_year_10 double precision not null,
    g_city double precision,
    n_rates integer not null,
    m_t0 double precision,
    g double precision,
    s double precision not null,
    phi double precision not null,
    pension_base double precision not null,
    pension_schedule_source text not null,
    anchor double precision not null,
    methodology_version text not null,
    entry_version bigint
);
create index if not exists projection_summaries_city
    on analytics.projection_summaries (city_key, projected_at);

create table if not exists ops.refresh_operations (
    run_id text not null,
    recorded_at timestamptz not null default now(),
    city_key text not null,
    city text,
    trigger text not null,
    entry_version bigint,
    previous_overall_points numeric(6, 2),
    overall_points numeric(6, 2),
    previous_overall_risk text,
    overall_risk text,
    previous_cliff_year integer,
    cliff_year integer,
    status text not null check (status in ('success', 'failure')),
    duration_seconds double precision,
    error text,
    report_path text
);
