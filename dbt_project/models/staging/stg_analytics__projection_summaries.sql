-- Every projection run's per-scenario results (history; analytics.current_projections names
-- each city's current run).
select * from {{ source('analytics', 'projection_summaries') }}
