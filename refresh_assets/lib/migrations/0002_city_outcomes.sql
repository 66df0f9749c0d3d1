-- 0002: per-city outcomes of a refresh (issue 8).
--
-- ops.refresh_operations: one row per run and city, success or failure, never both; the
-- stage where a city failed; the checksum of the inputs its change report was rendered
-- from (an unchanged city's report is not rendered again).
delete from ops.refresh_operations as older
using ops.refresh_operations as newer
where older.run_id = newer.run_id
  and older.city_key = newer.city_key
  and older.ctid < newer.ctid;
alter table ops.refresh_operations
    add column stage text,
    add column report_checksum text,
    add constraint refresh_operations_pkey primary key (run_id, city_key);
create index refresh_operations_city on ops.refresh_operations (city_key, recorded_at);

-- A form problem (an entry file that does not parse) has no entry version, and may have no
-- fiscal year; it is stored beside the value rules' issues.
alter table ops.validation_results
    alter column fiscal_year drop not null,
    alter column entry_version drop not null;
create index validation_results_run_city on ops.validation_results (run_id, city_key);

-- One row per city each time it is validated, clean or not: the mart of current issues
-- shows the issues of each city's latest validation, so a fixed entry leaves no issue.
create table ops.city_validations (
    run_id text not null,
    city_key text not null,
    validated_at timestamptz not null default now(),
    errors integer not null,
    warnings integer not null,
    infos integer not null,
    primary key (run_id, city_key)
);
create index city_validations_latest on ops.city_validations (city_key, validated_at desc);

-- Every email sent or attempted, with its outcome: a failed email is recorded here and
-- never turns a stored report into a failed refresh.
create table ops.notifications (
    notification_id bigint generated always as identity primary key,
    run_id text not null,
    channel text not null,
    subject text not null,
    recipients text[] not null,
    status text not null check (status in ('sent', 'failed')),
    error text,
    recorded_at timestamptz not null default now()
);
create index notifications_run on ops.notifications (run_id);
