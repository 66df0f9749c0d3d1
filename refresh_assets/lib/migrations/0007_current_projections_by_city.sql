-- 0007: BI tools read marts.city_forecast by city name; the pointer table is found by it
-- through an index rather than a scan of every city (benchmarks/RESULTS.md, forecast layer).
create index current_projections_city on analytics.current_projections (city);
