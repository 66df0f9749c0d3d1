-- Every validation of every city, with the rank of its run among the city's validations
-- (1 = latest): the current issues of a city are those of its rank-1 validation.
{{ with_run_rank(source('ops', 'city_validations'), 'validated_at') }}
