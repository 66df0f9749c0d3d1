-- Each city's current scoring: the rows of the run analytics.current_scores names (written
-- with the run, in the same transaction). One plain join, read through the (city_key,
-- run_id) index: the score marts are views over it, so a query costs the current rows,
-- not the whole history (see int_projection_rows).
select scores.*
from {{ source('analytics', 'risk_scores') }} as scores
inner join {{ source('analytics', 'current_scores') }} as current_scores
    on
        scores.city_key = current_scores.city_key
        and scores.run_id = current_scores.run_id
