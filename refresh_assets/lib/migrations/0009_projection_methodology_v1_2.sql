-- 0009: projections v1.2 (docs/METHODOLOGY.md §2). Every yearly row names the methodology
-- that made it (rows before this migration were v1.1's); a summary row carries v1.2's
-- spreads and the quantiles its band stands for (null for v1.1, whose band has no
-- probability meaning, and whose spread s v1.2 does not use); the statewide priors gain
-- v1.2's variances of yearly changes.
alter table analytics.projection_years
    add column methodology_version text not null default 'v1.1';
alter table analytics.projection_years alter column methodology_version drop default;

alter table analytics.projection_summaries
    alter column s drop not null,
    add column sigma_revenue double precision,
    add column sigma_expenditures double precision,
    add column sigma_fund_balance double precision,
    add column band_lower_quantile double precision,
    add column band_upper_quantile double precision;

alter table analytics.statewide_growth_medians
    add column revenue_variance double precision,
    add column expenditures_variance double precision,
    add column fund_balance_variance double precision;
