-- Every projection run's per-scenario results, ranked per city (1 = latest run).
{{ with_run_rank(source('analytics', 'projection_summaries'), 'projected_at') }}
