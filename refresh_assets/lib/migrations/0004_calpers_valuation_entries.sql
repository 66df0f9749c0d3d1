-- 0004: CalPERS valuation files (issue 9, part 6).
--
-- raw.calpers_valuation_entries: every version of every valuation file, append-only, like
-- raw.fiscal_entries. A file whose canonical content (source_checksum) equals its latest
-- version adds nothing. The projections read each city's newest valuation: the latest
-- version of each file, then the latest valuation date.
create table raw.calpers_valuation_entries (
    valuation_version bigint generated always as identity primary key,
    city_key text not null,
    city text not null,
    plan text not null,
    plan_key text not null,
    valuation_date date not null,
    funded_ratio numeric not null,
    unfunded_accrued_liability numeric not null,
    -- fiscal year (the year it ends, as text) -> employer contribution in USD
    employer_contributions jsonb not null,
    document_title text not null,
    document_url text,
    document_pages jsonb,
    entered_by text not null,
    entered_at timestamptz not null,
    notes text,
    source_path text not null,
    source_checksum text not null,
    run_id text not null,
    ingested_at timestamptz not null default now()
);
-- Each city's newest valuation: its versions by date, newest first.
create index calpers_valuation_entries_newest
    on raw.calpers_valuation_entries (city_key, valuation_date desc, valuation_version desc);
-- An ingest compares each file with its latest version.
create index calpers_valuation_entries_source_path
    on raw.calpers_valuation_entries (source_path, valuation_version desc);
