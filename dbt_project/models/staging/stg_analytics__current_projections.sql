-- Each city's current projection run (written with the run, in the same transaction).
select * from {{ source('analytics', 'current_projections') }}
