-- 0008: operator alerts (issue 11). One row per event alerted, keyed by the event, so an
-- event is alerted once whatever restarts: a run failure, a city that failed a stage, a
-- source whose breaker opened, a filing that became overdue. The row is claimed
-- ('sending') and committed before anything is sent: a crash between the two leaves it
-- 'sending', never sent twice.
create table ops.operator_alerts (
    alert_key text primary key,
    kind text not null
        check (kind in ('run_failure', 'city_failure', 'breaker_open', 'filing_overdue')),
    city_key text,
    summary text not null,
    detail text not null,
    event_at timestamptz,
    claimed_at timestamptz not null default now(),
    email_status text not null default 'sending'
        check (email_status in ('sending', 'sent', 'failed', 'off')),
    slack_status text not null default 'off'
        check (slack_status in ('sending', 'sent', 'failed', 'off')),
    sent_at timestamptz,
    error text
);
create index operator_alerts_kind on ops.operator_alerts (kind, claimed_at desc);
