-- Every scoring, with the rank of its run among the city's scorings (1 = latest).
{{ with_run_rank(source('analytics', 'risk_scores'), 'scored_at') }}
