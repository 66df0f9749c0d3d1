-- Every projection run's yearly values, ranked per city (1 = latest run).
{{ with_run_rank(source('analytics', 'projection_years'), 'projected_at') }}
