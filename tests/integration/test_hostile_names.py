"""SQL-injection-shaped names and titles (quotes, comment markers, statements, backslashes,
placeholders, COPY's and CSV's special characters, unicode, 10,000 characters) go through the
real paths into the test PostgreSQL and come back exactly as given, with every table intact:

- an operator's entry file: its source title, `entered_by` and notes into raw.fiscal_entries;
- a city name no city has: refused by design (the city list), the refusal naming the name
  verbatim, stored in ops.validation_results and shown in marts.fiscal_validation_issues
  (dbt); the source registry refuses it too;
- the warehouse's stores themselves, given such city names (raw.fiscal_entries, the per-city
  outcomes of ops.refresh_operations);
- a finance page whose link texts are such titles, checked over HTTP: ops.source_documents.

Writes that other tests could see are rolled back, or removed at the end (the mart rebuilt)."""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
import subprocess
import uuid

import pandas as pd
import psycopg2
import pytest
import yaml

from refresh_assets.lib.cities import city_key
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.entries import (
    EntryFile,
    ParsedEntry,
    check_entry_files,
    entries_to_frame,
    entry_document,
    known_figures,
    parse_entry_file,
    write_entry_file,
)
from refresh_assets.lib.fiscal_store import (
    append_entry_versions,
    form_problems_as_issues,
    load_entry_versions,
    record_city_validations,
    record_issues,
)
from refresh_assets.lib.refresh_outcomes import record_failures
from refresh_assets.lib.sources.checking import check_sources
from refresh_assets.lib.sources.discovery import find_documents
from refresh_assets.lib.sources.registry import RegistryError, load_registry
from refresh_assets.settings import DBT_PROJECT_DIR, PROJECT_DIR
from tests import http_fixtures
from tests.conftest import VENV_BIN
from tests.integration.test_source_documents import REGISTRY, registry_for

served_site = http_fixtures.served_site
pytestmark = pytest.mark.integration

HOSTILE = [
    "Robert'); DROP TABLE raw.fiscal_entries;--",
    "x'; DELETE FROM ops.validation_results; --",
    "\"; TRUNCATE ops.source_documents CASCADE; --",
    "1' OR '1'='1",
    "1; SELECT pg_sleep(30); --",
    "O'Brien \"the\" \\ back\\slash \\\\ \\'",
    "%s %(city)s %% {0} {city} ?",
    "$1 $$dollar$$ $tag$ quoted $tag$",
    "\\N", "\\.", "NULL", "-- comment", "/* open comment", ";",
    "a,b,\"c\"\n,d\r\ne\tf", "line\n\\.\nafter",
    "La Ca\u00f1ada \u6771\u4eac \u0639\u0631\u0628\u064a \U0001f4b0 \u202eevil e\u0301",
    "  leading and trailing  ",
    "<script>alert('x')</script> &amp; &lt;",
    "x" * 10_000,
]
# Titles are no key of anything: one of 12,800 characters that do not compress.
TITLES = [*HOSTILE, "".join(hashlib.sha256(str(n).encode()).hexdigest() for n in range(200))]
# No city has these names: the folder their refusals are filed under, as a city key.
FOLDER = "hostile-names-test"
DOCUMENTS_CITY = "Yreka"  # a city no other test checks the sources of
CHECKED_SCHEMAS = ("raw", "analytics", "ops", "marts", "staging")


def tables(conn) -> set[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute("select table_schema, table_name from information_schema.tables"
                    " where table_schema = any(%s)", (list(CHECKED_SCHEMAS),))
        return set(cur.fetchall())


@contextlib.contextmanager
def rolled_back(address):
    """A connection whose writes are undone at the end: what is read inside it was stored,
    and an injected statement would have run inside it too."""
    with contextlib.closing(psycopg2.connect(address.libpq_url())) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def hostile_entry(entries, text: str, year: int) -> EntryFile:
    """Vallejo's published figures of `year`, with `text` as title, transcriber and notes."""
    return EntryFile(city="Vallejo", fiscal_year=year, source={"title": text}, entered_by=text,
                     notes=text, entered_at="2026-11-20T10:00:00Z",
                     figures=known_figures(entries, "Vallejo", year))


def test_titles_and_names_in_an_entry_file_are_stored_verbatim(warehouse, tmp_path):
    entries = tmp_path / "entries"
    parsed = []
    for n, text in enumerate(TITLES):
        folder = entries / f"copy-{n}"  # one file per city-year and folder, as a run sees them
        path = write_entry_file(folder, hostile_entry(folder, text, 2019))
        result = parse_entry_file(path, folder)
        assert isinstance(result, ParsedEntry), result
        parsed.append(result)
    frame = entries_to_frame(parsed)
    frame["source_path"] = [f"{FOLDER}/{n}/2019.yaml" for n in range(len(TITLES))]

    with rolled_back(warehouse) as conn:
        before = tables(conn)
        added = append_entry_versions(conn, frame)
        assert len(added) == len(TITLES)
        stored = load_entry_versions(conn, ["vallejo"])
        mine = stored[stored["source_path"].str.startswith(f"{FOLDER}/")].sort_values(
            "source_path", key=lambda paths: paths.str.split("/").str[1].astype(int))
        assert list(mine["document_title"]) == TITLES
        assert list(mine["entered_by"]) == TITLES
        assert list(mine["notes"]) == TITLES
        assert tables(conn) == before


def test_the_stores_keep_any_city_name_verbatim(warehouse):
    """Given such names as cities (the stores check nothing about names), raw.fiscal_entries
    and ops.refresh_operations keep them and find them again by their key. A name without
    a letter or digit has no key, which the stores need (city_key is not null): entry files
    refuse such a name before (known_city, below)."""
    names = [name for name in HOSTILE if city_key(name)]
    assert sorted(set(HOSTILE) - set(names)) == [";", "\\."]
    versions = pd.DataFrame({
        "city": names, "fiscal_year": 2019, "gf_revenues": 1,
        "source_kind": "bulk_import", "document_title": names,
        "source_path": [f"{FOLDER}/bulk/{n}" for n in range(len(names))]})
    run_id = f"hostile-{uuid.uuid4()}"
    with rolled_back(warehouse) as conn:
        before = tables(conn)
        append_entry_versions(conn, versions)
        stored = load_entry_versions(conn, sorted({city_key(name) for name in names}))
        mine = stored[stored["source_path"].str.startswith(f"{FOLDER}/bulk/")]
        assert sorted(mine["city"]) == sorted(names)
        assert sorted(mine["document_title"]) == sorted(names)
        assert set(zip(mine["city"], mine["city_key"], strict=True)) == {
            (n, city_key(n)) for n in names}

        keyed = {city_key(name): name for name in names}  # one name per key
        record_failures(conn, run_id, "manual", "validation", pd.DataFrame({
            "city_key": list(keyed), "city": list(keyed.values()),
            "error": list(keyed.values())}))
        with conn.cursor() as cur:
            cur.execute("select city_key, city, error from ops.refresh_operations"
                        " where run_id = %s", (run_id,))
            assert {key: (city, error) for key, city, error in cur.fetchall()} == {
                key: (name, name) for key, name in keyed.items()}
        assert tables(conn) == before


def test_a_city_no_city_has_is_refused_naming_it_verbatim_down_to_the_mart(warehouse, tmp_path):
    entries = tmp_path / "entries"
    (entries / FOLDER).mkdir(parents=True)
    for n, name in enumerate(HOSTILE):
        # As `refresh-assets enter` writes a file (it would refuse the city itself).
        entry = hostile_entry(entries, "ACFR", 2019).model_copy(
            update={"city": name, "fiscal_year": 2000 + n})
        (entries / FOLDER / f"{2000 + n}.yaml").write_text(
            yaml.safe_dump(entry_document(entry), allow_unicode=True, sort_keys=False))
    parsed, problems = check_entry_files(sorted(entries.glob(f"{FOLDER}/*.yaml")), entries)
    assert parsed == []
    refusals = {p.file: p for p in problems if p.rule == "known_city"}
    assert {p.value for p in refusals.values()} == {name for name in HOSTILE if name.strip()}
    assert all(p.field == "city" and p.severity == "error" for p in refusals.values())

    run_id = f"hostile-{uuid.uuid4()}"
    try:
        with warehouse_connection(warehouse) as conn:
            before = tables(conn)
            record_issues(conn, run_id, form_problems_as_issues(problems))
            record_city_validations(conn, run_id, [FOLDER])
        with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
            cur.execute("select value from ops.validation_results where run_id = %s"
                        " and rule = 'known_city'", (run_id,))
            assert sorted(value for (value,) in cur.fetchall()) == sorted(
                p.value for p in refusals.values())
            assert tables(conn) == before

        dbt_run(tmp_path / "dbt", "+fiscal_validation_issues")
        with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
            cur.execute("select value from marts.fiscal_validation_issues where run_id = %s"
                        " and rule = 'known_city'", (run_id,))
            assert sorted(value for (value,) in cur.fetchall()) == sorted(
                p.value for p in refusals.values())
            assert tables(conn) >= before  # dbt may have created its views the first time
    finally:
        with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
            for table in ("validation_results", "city_validations"):
                cur.execute(f"delete from ops.{table} where run_id = %s", (run_id,))
        dbt_run(tmp_path / "dbt", "fiscal_validation_issues")


def dbt_run(target, *select: str) -> None:
    """`dbt run` of the models selected (their tests read models this test does not build)."""
    result = subprocess.run(
        [str(VENV_BIN / "dbt"), "run", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
         str(DBT_PROJECT_DIR), "--target-path", str(target), "--log-path", str(target / "logs"),
         "--no-use-colors", "--select", *select],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"dbt run exited {result.returncode}:\n{result.stdout}"


def test_the_source_registry_refuses_a_city_no_city_has(tmp_path):
    registry = yaml.safe_load(REGISTRY.format(cities="  {}"))
    registry["cities"] = {name: {"finance_pages": ["http://127.0.0.1/x"]} for name in HOSTILE[:6]}
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(registry, allow_unicode=True, sort_keys=False))
    with pytest.raises(RegistryError) as refused:
        load_registry(path)
    lines = str(refused.value).splitlines()
    assert len(lines) == 6
    for name, line in zip(HOSTILE[:6], lines, strict=True):
        assert line.startswith(f"{path}: field cities.{name}: known_city: no California city")


def test_document_titles_from_a_served_page_are_stored_verbatim(warehouse, served_site,
                                                                 tmp_path):
    key = city_key(DOCUMENTS_CITY)
    links = "".join(
        f"<li><a href=\"/docs/acfr-{n}.pdf\">ACFR FY {1999 + n}-{(2000 + n) % 100:02d} "
        f"{html.escape(text)}</a></li>" for n, text in enumerate(TITLES))
    page = (f"<html><head><meta charset=\"utf-8\"></head><body><h1>Finance</h1>"
            f"<ul>{links}</ul></body></html>").encode()
    served_site.route("/yreka/finance", page)
    registry = registry_for(tmp_path, served_site, {DOCUMENTS_CITY: "/yreka/finance"})
    expected = {d.url: d.title for d in find_documents(page, served_site.url("/yreka/finance"))}
    assert len(expected) == len(TITLES)
    for n, text in enumerate(TITLES):
        # Discovery joins the link's text with single spaces: the rest is the text as given.
        title = expected[served_site.url(f"/docs/acfr-{n}.pdf")]
        assert re.sub(r"\s", "", text) in re.sub(r"\s", "", title)

    try:
        with warehouse_connection(warehouse) as conn:
            before = tables(conn)
        [result] = check_sources(warehouse, registry, registry.sources, force=True)
        assert (result.outcome, result.documents_found) == ("changed", len(TITLES))
        with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
            cur.execute("select url, title from ops.source_documents where city_key = %s", (key,))
            assert dict(cur.fetchall()) == expected
            assert tables(conn) == before
    finally:
        with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
            for table in ("refresh_notifications", "source_documents", "refresh_checks",
                          "source_state"):
                cur.execute(f"delete from ops.{table} where city_key = %s", (key,))


def test_the_fixture_city_is_unused_elsewhere():
    """The rows the document test writes and removes are its city's alone."""
    others = [p for p in (PROJECT_DIR / "tests").rglob("test_*.py")
              if p.name != "test_hostile_names.py" and DOCUMENTS_CITY in p.read_text()]
    assert others == []
