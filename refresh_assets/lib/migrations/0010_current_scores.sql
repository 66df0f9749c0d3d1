-- 0010: each city's current scoring run (issue 13), as 0005 did for projections.
--
-- marts.city_risk_scores and city_fiscal_health become views, readable the moment a city's
-- refresh is stored instead of after the run's dbt build (10 s later). A view that ranked
-- the whole scoring history on every query would grow with the history; the views read
-- the current run's rows through this pointer, which the projections step advances in the
-- transaction of the city's projection (scores and forecast change together).
create table analytics.current_scores (
    city_key text primary key,
    city text not null,
    run_id text not null,
    scored_at timestamptz not null
);

create index risk_scores_run on analytics.risk_scores (city_key, run_id);

-- Point at each city's latest scoring already stored (its latest write; run_id breaks a
-- tie, as in the staging ranking, macros/with_run_rank.sql).
insert into analytics.current_scores (city_key, city, run_id, scored_at)
select distinct on (city_key) city_key, city, run_id, scored_at
from analytics.risk_scores
order by city_key, scored_at desc, run_id desc;
