-- 0003: source documents (issue 9): what each source looked like at its last check, every
-- check made, every document found, and the notifications operators get.

-- One row per source of the registry (sources.yaml): the validators of its last good
-- response (a conditional GET sends them back), the checksum of the page last parsed (an
-- unchanged page does no work) and its circuit breaker.
create table ops.source_state (
    source_id text primary key,
    city_key text not null,
    url text not null,
    etag text,
    last_modified text,
    content_sha256 text,
    last_checked_at timestamptz,
    last_success_at timestamptz,
    consecutive_failures integer not null default 0,
    breaker_state text not null default 'closed'
        check (breaker_state in ('closed', 'open', 'half_open')),
    breaker_open_until timestamptz,
    -- Times the breaker opened since it last closed: its cool-down doubles with each.
    breaker_openings integer not null default 0
);

-- Every check of a source, kept for its reliability score and for the UI and status mart.
create table ops.refresh_checks (
    check_id bigint generated always as identity primary key,
    source_id text not null,
    city_key text not null,
    url text not null,
    checked_at timestamptz not null default now(),
    outcome text not null
        check (outcome in ('changed', 'unchanged', 'not_modified', 'failed')),
    http_status integer,
    bytes integer not null default 0,
    duration_seconds double precision,
    documents_found integer,
    new_documents integer,
    error_kind text,
    error text
);
create index refresh_checks_source on ops.refresh_checks (source_id, checked_at desc);

-- Every document found on a listing page, once per URL. `status`: 'new' (operators are
-- told to enter it), 'already_entered' (its city-year was entered before it was seen),
-- 'duplicate' (another URL of the same city's ACFR for that year was seen first) or
-- 'out_of_scope' (older than the registry's oldest_fiscal_year).
create table ops.source_documents (
    document_id bigint generated always as identity primary key,
    source_id text not null,
    city_key text not null,
    doc_type text not null check (doc_type in ('acfr', 'calpers_valuation')),
    fiscal_year integer not null,
    url text not null,
    title text not null,
    status text not null check (status in ('new', 'already_entered', 'duplicate', 'out_of_scope')),
    first_seen_at timestamptz not null default now(),
    first_seen_check bigint references ops.refresh_checks,
    download_status text not null default 'not_requested'
        check (download_status in ('not_requested', 'stored', 'not_allowed', 'failed')),
    download_sha256 text,
    download_path text,
    download_bytes bigint,
    download_error text,
    unique (city_key, url)
);
create index source_documents_city_year on ops.source_documents (city_key, doc_type, fiscal_year);

-- One notification per new document: pending -> acknowledged -> completed (completed when
-- that city-year's entry validates). The email is claimed ('sending') in its own committed
-- transaction before it is sent, so a crash never sends it twice.
create table ops.refresh_notifications (
    notification_id bigint generated always as identity primary key,
    document_id bigint not null unique references ops.source_documents,
    city_key text not null,
    doc_type text not null,
    fiscal_year integer not null,
    status text not null default 'pending'
        check (status in ('pending', 'acknowledged', 'completed')),
    created_at timestamptz not null default now(),
    email_status text not null default 'not_sent'
        check (email_status in ('not_sent', 'sending', 'sent', 'failed', 'off')),
    emailed_at timestamptz,
    email_error text,
    acknowledged_at timestamptz,
    acknowledged_by text,
    completed_at timestamptz,
    completed_by_run text
);
create index refresh_notifications_open on ops.refresh_notifications (city_key, doc_type, fiscal_year)
    where status <> 'completed';
