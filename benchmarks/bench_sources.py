"""Measures the source checks (issue 9): one sensor tick over 500 sources, and the time from a
new document on a page to the operator's email.

What it measures, in one run of this script, on a throwaway embedded PostgreSQL (fresh
cluster in a temp folder under /tmp, free port, stopped and removed at the end) and a small
HTTP server of its own (a subprocess, so it does not share the measured process's GIL):

  1. one tick over 500 sources, all unchanged: the 477 known cities' finance pages plus a
     second "archive" page for 23 of them (the registry accepts known cities only, and there
     are 477), all on 127.0.0.1 with `min_interval_seconds: 0` and `poll_every_minutes: 0`
     (every source is due at every tick). The pages carry an ETag and the server answers
     If-None-Match with 304. First the "all new" tick (every page parsed and its documents
     recorded), then measured ticks (all 304s): `check_sources(address, registry, sources)`
     as the sensor calls it (--repeats times), and the sensor itself,
     `source_documents_sensor`, through `build_sensor_context` with the instance of
     dagster.yaml and the project's resources (one warm-up tick that registers the 477 city
     partitions, then --repeats ticks);
  2. the same with 5 pages changed (a new "Annual Comprehensive Financial Report FY 2024-25"
     link on each): `check_sources` (--repeats rounds, 5 other cities each round) and the
     sensor (--repeats rounds): seconds, bytes, new documents, run requests;
  3. a new link on a page -> one sensor tick (over all 500 sources) -> the `source_documents`
     job in process for that city (`execute_in_process`, as the run the tick requested) ->
     the operator's email received by a real SMTP server (aiosmtpd on 127.0.0.1). Each
     stage's seconds (wall clock), --repeats times, a different city each time.

The published data set is loaded into raw.fiscal_entries first, and each city's page lists
the ACFRs of the years it has there (status "already_entered") and two older ones
("out_of_scope"), so the first tick finds no "new" document and the only new documents are
the FY 2024-25 links the script adds. Pages are padded to --page-kib KiB with a navigation
menu (city sites' pages are tens of KiB); robots.txt is a 200 of ~600 bytes with no
validator (the fetcher asks for it without one).

For every tick: seconds, requests the server received (by status), body bytes it sent, rows
added to ops.refresh_checks and their outcomes, documents recorded, run requests.

The code measured is that of the checkout this file is in (it goes first on the import
path). What Dagster prints goes to a log file in the work folder. Usage:

    python benchmarks/bench_sources.py [--repeats 3] [--page-kib 30] [--json OUT.json] [--keep]
    python benchmarks/bench_sources.py --from-json OUT.json    # print saved figures again
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import free_port, git_state  # noqa: E402

SOURCES = 500
CHANGED = 5
NEW_YEAR = 2025  # "FY 2024-25": not in the published data (2017-2020), so "new"
OLD_YEARS = (2015, 2016)  # before oldest_fiscal_year (2017): "out_of_scope"
ARCHIVE_YEARS = tuple(range(2010, 2017))
SUMMARY = sys.stdout
ROBOTS = (b"# robots.txt for a city website\nUser-agent: *\nDisallow: /admin/\nDisallow: /Search/\n"
          b"Disallow: /login\nDisallow: /calendar.aspx?*\nDisallow: /AgendaCenter/Search/\n"
          b"Disallow: /Archive.aspx?ADID=*\nDisallow: /DocumentCenter/Search/\nDisallow: /Map/\n"
          b"Disallow: /Forms/Submission/\nDisallow: /RSSFeed.aspx\nDisallow: /Print/\n"
          b"Disallow: /ImageRepository/Document?*\nDisallow: /FormCenter/Search/\n"
          b"Disallow: /Directory.aspx?*\nDisallow: /Shortcuts.aspx\nDisallow: /Jobs.aspx?*\n"
          b"Disallow: /QuickLinks.aspx?*\nDisallow: /Facilities/Search/\nDisallow: /Blog.aspx?*\n"
          b"Disallow: /CivicAlerts.aspx?*\nDisallow: /Faq.aspx?*\nSitemap: /sitemap.xml\n"
          b"Crawl-delay: 0\n")


# --------------------------------------------------------------------------------------
# The web server: a subprocess (`--serve`), pages set and counters read over /__ paths.
# --------------------------------------------------------------------------------------

def serve() -> None:
    """Serves pages with an ETag (304 to a matching If-None-Match) and counts requests and
    body bytes; /__page (POST, ?path=) sets a page, /__stats reads the counters. Prints its
    port, then serves until it is terminated."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    lock = threading.Lock()
    pages: dict[str, tuple[bytes, str, str]] = {}
    stats: Counter = Counter()
    validators = {"on": True}

    def set_page(path: str, body: bytes, content_type: str) -> None:
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        with lock:
            pages[path] = (body, etag, content_type)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers
        # Headers and body go out in two writes: with Nagle's algorithm on, the body waits
        # for the client's delayed ACK (40 ms a response on Linux), which real servers avoid.
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:
            pass

        def reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/__stats":
                with lock:
                    self.reply(200, json.dumps(stats).encode(), {"Content-Type": "application/json"})
                return
            with lock:
                page = pages.get(self.path)
            if page is None:
                status, body, headers = 404, b"not found", {"Content-Type": "text/plain"}
            else:
                body, etag, content_type = page
                if not validators["on"]:
                    status, headers = 200, {"Content-Type": content_type}
                elif self.headers.get("If-None-Match") == etag:
                    status, body, headers = 304, b"", {"ETag": etag}
                else:
                    status, headers = 200, {"ETag": etag, "Content-Type": content_type}
            with lock:
                stats["requests"] += 1
                stats[f"status_{status}"] += 1
                stats["body_bytes"] += len(body)
                if self.path == "/robots.txt":
                    stats["robots_requests"] += 1
                    stats["robots_bytes"] += len(body)
            self.reply(status, body, headers)

        def do_POST(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            query = parse_qs(parts.query)
            if parts.path == "/__validators":
                validators["on"] = query["on"][0] == "1"
                self.reply(204)
                return
            set_page(query["path"][0], body, query.get("type", ["text/html; charset=utf-8"])[0])
            self.reply(204)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


class Site:
    """The controlling side of the server subprocess."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--serve"],
                                        stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set_page(self, path: str, body: bytes, content_type: str = "text/html; charset=utf-8") -> None:
        from urllib.parse import quote
        request = urllib.request.Request(
            self.url(f"/__page?path={quote(path)}&type={quote(content_type)}"), data=body,
            method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def validators(self, on: bool) -> None:
        request = urllib.request.Request(self.url(f"/__validators?on={int(on)}"), data=b"",
                                         method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stats(self) -> Counter:
        with urllib.request.urlopen(self.url("/__stats"), timeout=10) as response:
            return Counter(json.loads(response.read()))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def fy(year: int) -> str:
    return f"FY {year - 1}-{year % 100:02d}"


NAV = ("Agendas and Minutes", "Animal Services", "Building Permits", "Business Licenses",
       "City Clerk", "City Council", "Code Enforcement", "Community Development", "Economic "
       "Development", "Emergency Services", "Engineering", "Fire Department", "Housing",
       "Human Resources", "Information Technology", "Library", "Parks and Recreation",
       "Planning Commission", "Police Department", "Public Works", "Utilities Billing",
       "Water Quality", "Youth Programs", "Senior Center", "Street Sweeping", "Trash Pickup")


def finance_page(city: str, key: str, years: list[int], *, kib: int, archive: bool = False,
                 revision: int = 0) -> bytes:
    """A city finance page: a navigation menu (padding to `kib` KiB), a table of ACFR links,
    a budget link (a document the discovery must leave out)."""
    title = "CAFR Archive" if archive else "Finance Department"
    rows = "".join(
        f'<tr><td>{"Comprehensive Annual" if year < 2019 else "Annual Comprehensive"} Financial '
        f'Report {fy(year)}</td><td><a href="/docs/{key}/acfr-{year}.pdf">Download (PDF)</a>'
        f"</td></tr>" for year in sorted(years, reverse=True))
    main = (f"<main><h1>{title}</h1><p>The City of {city} Finance Department manages the "
            f"city's accounts, payroll and purchasing.</p><h2>Financial Reports</h2>"
            f"<table><tr><th>Report</th><th>File</th></tr>{rows}</table>"
            f'<p><a href="/docs/{key}/budget.pdf">Adopted Budget FY 2023-24</a></p></main>')
    head = f"<!DOCTYPE html><html><head><title>{title} | City of {city}</title></head><body>"
    items, size, i = [], len(head) + len(main) + 40, 0
    while size < kib * 1024:
        name = NAV[i % len(NAV)]
        slug = name.lower().replace(" ", "-")
        item = (f'<li class="nav-item"><a href="/{slug}/{"abcdefghij"[i // len(NAV) % 10]}" '
                f'title="{name}">{name}</a><ul class="sub"><li><a href="/{slug}/contact">Contact '
                f"{name}</a></li><li><a href=\"/{slug}/services\">Services</a></li></ul></li>")
        items.append(item)
        size += len(item)
        i += 1
    return (head + f'<nav><ul class="menu">{"".join(items)}</ul></nav>' + main
            + f"<!-- revision {revision} --></body></html>").encode()


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------

class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[float, object]] = []  # (time.time(), envelope)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.received.append((time.time(), envelope))
        return "250 OK"


def query(address, sql: str, *params):
    import psycopg2
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.close()
    return rows


def measure(site: Site, address, label: str, action) -> dict:
    """Runs `action()` and returns its seconds with what it cost the server and the database."""
    [(checks_before, documents_before)] = query(
        address, "select (select coalesce(max(check_id), 0) from ops.refresh_checks), "
                 "(select coalesce(max(document_id), 0) from ops.source_documents)")
    before = site.stats()
    started = time.perf_counter()
    returned = action()
    seconds = time.perf_counter() - started
    after = site.stats()
    served = after - before
    outcomes = dict(query(address, "select outcome, count(*) from ops.refresh_checks "
                                   "where check_id > %s group by outcome", checks_before))
    documents = dict(query(address, "select status, count(*) from ops.source_documents "
                                    "where document_id > %s group by status", documents_before))
    row = {
        "label": label, "seconds": seconds, "requests": served["requests"],
        "status_304": served["status_304"], "status_200": served["status_200"],
        "body_bytes": served["body_bytes"], "robots_requests": served["robots_requests"],
        "robots_bytes": served["robots_bytes"], "checks_rows": sum(outcomes.values()),
        "outcomes": outcomes, "documents": documents, "new_documents": documents.get("new", 0),
    }
    if isinstance(returned, dict):
        row.update(returned)
    print(f"  {label}: {seconds:.2f} s, {row['requests']} requests, {row['body_bytes']:,} body "
          f"bytes, {row['checks_rows']} checks, new documents {row['new_documents']}"
          + (f", run requests {row['run_requests']}, observations {row['observations']}"
             if "run_requests" in row else ""),
          file=SUMMARY, flush=True)
    return row


def run(options: argparse.Namespace, address, site: Site, inbox: Inbox, folder: Path) -> dict:
    import dagster as dg
    import pandas as pd

    from refresh_assets.defs.resources import build_resources
    from refresh_assets.defs.sources import source_documents_sensor
    from refresh_assets.lib.cities import known_cities
    from refresh_assets.lib.database import warehouse_connection
    from refresh_assets.lib.fiscal_inputs import bulk_rows_as_versions, read_fiscal_inputs_csv
    from refresh_assets.lib.fiscal_store import append_entry_versions
    from refresh_assets.lib.sources.checking import check_sources
    from refresh_assets.lib.sources.registry import load_registry
    from refresh_assets.settings import DATA_DIR

    out: dict = {"ticks": {}}
    ticks = out["ticks"]

    # The published data set, as a refresh leaves it: its years are "already entered".
    published = read_fiscal_inputs_csv(DATA_DIR / "ca_city_fiscal_inputs.csv")
    with warehouse_connection(address) as conn:
        append_entry_versions(conn, bulk_rows_as_versions(published, "ca_city_fiscal_inputs.csv"))
    years = published[pd.to_numeric(published["gf_revenues"], errors="coerce").notna()].groupby(
        "city")["fiscal_year"].agg(lambda s: sorted(int(y) for y in s)).to_dict()

    cities = sorted(known_cities().items())  # (key, official name)
    with_archive = [key for key, _ in cities[::len(cities) // (SOURCES - len(cities)) + 1]]
    with_archive = with_archive[:SOURCES - len(cities)]
    page_years = {key: years.get(name, []) + list(OLD_YEARS) for key, name in cities}
    for key, name in cities:
        site.set_page(f"/{key}/finance", finance_page(name, key, page_years[key], kib=options.page_kib))
    for key in with_archive:
        site.set_page(f"/{key}/archive", finance_page(known_cities()[key], key, list(ARCHIVE_YEARS),
                                                      kib=options.page_kib, archive=True))
    site.set_page("/robots.txt", ROBOTS, "text/plain")
    registry_lines = [
        "checks:",
        '  user_agent: "refresh-assets benchmark (+mailto:ops@example.org)"',
        "  poll_every_minutes: 0", "  retries: 0", "  read_timeout_seconds: 10",
        "cadence:", "  acfr: {months: [1, 4, 7, 10], day: 15}",
        "  calpers_valuation: {months: [7], day: 1}",
        "hosts:", "  127.0.0.1: {min_interval_seconds: 0}", "cities:"]
    for key, name in cities:
        pages = [site.url(f"/{key}/finance")] + ([site.url(f"/{key}/archive")]
                                                 if key in with_archive else [])
        registry_lines += [f'  "{name}":', f"    finance_pages: [{', '.join(pages)}]"]
    registry_path = Path(os.environ["REFRESH_SOURCES_FILE"])
    registry_path.write_text("\n".join(registry_lines) + "\n")
    started = time.perf_counter()
    registry = load_registry(registry_path)
    out["registry_load"] = time.perf_counter() - started
    assert len(registry.sources) == SOURCES, len(registry.sources)
    page_bytes = [len(finance_page(name, key, page_years[key], kib=options.page_kib))
                  for key, name in cities[:5]]
    out["page_bytes"] = statistics.median(page_bytes)
    print(f"registry: {len(registry.sources)} sources ({len(cities)} cities, {len(with_archive)} "
          f"with a second page), loaded in {out['registry_load']:.2f} s; pages "
          f"~{out['page_bytes']:,.0f} bytes", file=SUMMARY, flush=True)

    def checks() -> dict:
        results = check_sources(address, registry, registry.sources)
        return {"client_bytes": sum(r.bytes for r in results),
                "outcomes_returned": dict(Counter(r.outcome for r in results))}

    # Cities whose page changes, in order, none twice.
    order = [key for key, _ in cities[7::3]]
    changing = iter(order)

    def add_new_link(key: str) -> None:
        page_years[key] = [NEW_YEAR] + page_years[key]
        site.set_page(f"/{key}/finance", finance_page(known_cities()[key], key, page_years[key],
                                                      kib=options.page_kib))

    def change_every_page(revision: int) -> None:
        # A byte changes on every page (a redesign, a new footer), no new link.
        for key, name in cities:
            site.set_page(f"/{key}/finance", finance_page(name, key, page_years[key],
                                                          kib=options.page_kib, revision=revision))
        for key in with_archive:
            site.set_page(f"/{key}/archive", finance_page(known_cities()[key], key,
                                                          list(ARCHIVE_YEARS), kib=options.page_kib,
                                                          archive=True, revision=revision))

    # 1. check_sources: the first tick, then unchanged ticks.
    print("check_sources (the sensor's checks), 500 sources:", file=SUMMARY)
    ticks["first"] = measure(site, address, "first tick, all pages new", checks)
    ticks["unchanged"] = [measure(site, address, f"unchanged #{i + 1}", checks)
                          for i in range(options.repeats)]
    # 2. five pages changed.
    ticks["changed"] = []
    for i in range(options.repeats):
        for _ in range(CHANGED):
            add_new_link(next(changing))
        ticks["changed"].append(measure(site, address, f"{CHANGED} changed #{i + 1}", checks))
    # 1b. Unchanged pages from a server that sends no validators (no ETag, no Last-Modified):
    # every body comes back, its checksum says "unchanged", nothing is parsed.
    site.validators(False)
    ticks["no_validators"] = [measure(site, address, f"unchanged, no validators #{i + 1}", checks)
                              for i in range(options.repeats)]
    site.validators(True)

    # The sensor as the daemon evaluates it.
    started = time.perf_counter()
    resources = build_resources()
    sensor_resources = {"warehouse": resources["warehouse"],
                        "source_registry": resources["source_registry"]}
    from refresh_assets.definitions import defs
    job = defs.resolve_job_def("source_documents")
    out["load_definitions"] = time.perf_counter() - started
    print(f"definitions loaded in {out['load_definitions']:.1f} s", file=SUMMARY, flush=True)

    with dg.DagsterInstance.get() as instance:
        state = {"cursor": None}

        def dispatched_all() -> None:
            # What the earlier rounds found counts as dispatched (as a daemon's cursor would).
            [(last,)] = query(address, "select coalesce(max(document_id), 0) from ops.source_documents")
            state["cursor"] = json.dumps({"dispatched_through": last})

        def tick() -> dict:
            context = dg.build_sensor_context(instance=instance, resources=sensor_resources,
                                              cursor=state["cursor"])
            result = source_documents_sensor(context)
            state["cursor"] = result.cursor
            state["result"] = result
            return {"run_requests": len(result.run_requests),
                    "partitions_requested": sum(len(r.partition_keys)
                                                for r in result.dynamic_partitions_requests),
                    "observations": len(result.asset_events)}

        def register_partitions() -> None:
            for request in state["result"].dynamic_partitions_requests:
                instance.add_dynamic_partitions(request.partitions_def_name,
                                                list(request.partition_keys))

        print("source_documents_sensor, 500 sources:", file=SUMMARY)
        dispatched_all()
        ticks["sensor_first"] = measure(site, address, "sensor, first tick (asks for the "
                                        "477 city partitions)", tick)
        started = time.perf_counter()
        register_partitions()
        out["register_partitions"] = time.perf_counter() - started
        ticks["sensor_unchanged"] = [measure(site, address, f"sensor, unchanged #{i + 1}", tick)
                                     for i in range(options.repeats)]
        ticks["sensor_changed"] = []
        for i in range(options.repeats):
            dispatched_all()
            for _ in range(CHANGED):
                add_new_link(next(changing))
            ticks["sensor_changed"].append(measure(site, address, f"sensor, {CHANGED} changed "
                                                   f"#{i + 1}", tick))

        # Every page changed, no new document: what the sensor costs when all must be parsed
        # (the first tick after a registry of new sources, or pages whose bytes change).
        dispatched_all()
        change_every_page(1)
        ticks["sensor_all_changed"] = measure(site, address, "sensor, all 500 pages changed", tick)

        # 3. A new link -> a sensor tick -> the city's source_documents run -> the email.
        print("new link -> email:", file=SUMMARY)
        out["latency"] = []
        for i in range(options.repeats):
            dispatched_all()
            city = next(changing)
            emails_before = len(inbox.received)
            appeared = time.time()
            add_new_link(city)
            tick()
            ticked = time.time()
            [request] = state["result"].run_requests
            assert request.partition_key == city, (request.partition_key, city)
            register_partitions()
            result = job.execute_in_process(instance=instance, partition_key=city,
                                            tags=request.tags, raise_on_error=False)
            finished = time.time()
            record = instance.get_run_record_by_id(result.run_id)
            new_emails = inbox.received[emails_before:]
            assert result.success and len(new_emails) == 1, (result.success, len(new_emails))
            emailed, envelope = new_emails[0]
            subject = next(line for line in envelope.content.decode().splitlines()
                           if line.startswith("Subject:"))
            stages = {
                "city": city, "subject": subject, "rcpt_tos": envelope.rcpt_tos,
                "page_to_tick_done": ticked - appeared,
                "tick_to_run_start": record.start_time - ticked,
                "run_start_to_email": emailed - record.start_time,
                "email_to_run_end": record.end_time - emailed,
                "run_end_to_returned": finished - record.end_time,
                "page_to_email": emailed - appeared,
                "page_to_run_returned": finished - appeared,
            }
            out["latency"].append(stages)
            print(f"  #{i + 1} {city}: page -> email {stages['page_to_email']:.2f} s (tick "
                  f"{stages['page_to_tick_done']:.2f}, run creation {stages['tick_to_run_start']:.2f},"
                  f" run start -> email {stages['run_start_to_email']:.2f}); {subject}",
                  file=SUMMARY, flush=True)
    return out


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def median_of(rows: list[dict], name: str) -> float:
    return statistics.median(r[name] for r in rows)


def report(figures: dict) -> None:
    meta, ticks = figures["meta"], figures["ticks"]
    print(f"\n{meta['date']}, code {meta['code']}, {meta['machine']}, load average "
          f"{meta['load_average_at_start']} at start, {meta.get('load_average_at_end')} at end")
    print(f"registry of {SOURCES} sources loaded in {figures['registry_load']:.2f} s "
          f"(the sensor loads it at every tick); pages ~{figures['page_bytes']:,.0f} bytes; "
          f"definitions loaded in {figures['load_definitions']:.1f} s")
    header = (f"{'tick (500 sources, one host 127.0.0.1)':44s} {'seconds':>8s} {'requests':>8s} "
              f"{'304':>5s} {'200':>5s} {'body bytes':>11s} {'robots':>7s} {'checks':>6s} "
              f"{'new docs':>8s} {'runs':>5s}")
    print("\n" + header)

    def line(label: str, rows: list[dict]) -> None:
        seconds = [r["seconds"] for r in rows]
        shown = f"{statistics.median(seconds):8.2f}"
        runs = [r["run_requests"] for r in rows if "run_requests" in r]
        print(f"{label:44s} {shown} {median_of(rows, 'requests'):8.0f} "
              f"{median_of(rows, 'status_304'):5.0f} {median_of(rows, 'status_200'):5.0f} "
              f"{median_of(rows, 'body_bytes'):11,.0f} {median_of(rows, 'robots_bytes'):7,.0f} "
              f"{median_of(rows, 'checks_rows'):6.0f} {median_of(rows, 'new_documents'):8.0f} "
              f"{statistics.median(runs) if runs else '-':>5}"
              + (f"   ({', '.join(f'{s:.2f}' for s in seconds)})" if len(rows) > 1 else ""))

    line("check_sources, first tick (all new)", [ticks["first"]])
    line("check_sources, unchanged (median)", ticks["unchanged"])
    line(f"check_sources, {CHANGED} changed (median)", ticks["changed"])
    line("sensor, first tick (partitions asked)", [ticks["sensor_first"]])
    line("sensor, unchanged (median)", ticks["sensor_unchanged"])
    line(f"sensor, {CHANGED} changed (median)", ticks["sensor_changed"])
    line("check_sources, unchanged, no validators", ticks["no_validators"])
    line("sensor, all 500 changed, no new link", [ticks["sensor_all_changed"]])
    print(f"(registering the 477 city partitions the first sensor tick asks for, as the daemon "
          f"does after it: {figures['register_partitions']:.2f} s)")
    first = ticks["first"]
    print(f"first tick: outcomes {first['outcomes']}, documents {first['documents']}")
    unchanged = statistics.median(r["seconds"] for r in ticks["unchanged"])
    sensor = statistics.median(r["seconds"] for r in ticks["sensor_unchanged"])
    print(f"per source, unchanged: {1000 * unchanged / SOURCES:.1f} ms; sensor / check_sources "
          f"(unchanged): {sensor / unchanged:.2f}; first tick / unchanged: "
          f"{first['seconds'] / unchanged:.1f}")
    print(f"sensor, all changed: {ticks['sensor_all_changed'].get('observations')} observations "
          "(one per city with a changed page)")

    latency = figures["latency"]
    print(f"\nnew link -> operator's email, in process, median of {len(latency)} (seconds):")
    for name, label in (("page_to_tick_done", "sensor tick (500 sources, 1 changed)"),
                        ("tick_to_run_start", "run created and started (execute_in_process)"),
                        ("run_start_to_email", "run start -> email received"),
                        ("page_to_email", "page changed -> email received"),
                        ("email_to_run_end", "(email -> run end)"),
                        ("page_to_run_returned", "(page changed -> run returned)")):
        values = [r[name] for r in latency]
        print(f"  {label:48s} {statistics.median(values):7.2f}   "
              f"({', '.join(f'{v:.2f}' for v in values)})")
    print(f"  email: {latency[0]['subject']} to {latency[0]['rcpt_tos']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="measured ticks per case (default 3)")
    parser.add_argument("--page-kib", type=int, default=30, help="size of a page (default 30 KiB)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    parser.add_argument("--from-json", type=Path, metavar="JSON",
                        help="print the figures of an earlier --json file; measure nothing")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.from_json:
        report(json.loads(args.from_json.read_text()))
        return

    from aiosmtpd.controller import Controller

    import refresh_assets
    from refresh_assets.lib.runtime import embedded_server, ensure_database, runtime_environment
    from refresh_assets.settings import DBT_PROJECT_DIR, load_settings

    assert Path(refresh_assets.__file__).resolve().is_relative_to(REPO), refresh_assets.__file__
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "code": git_state(REPO),
            "machine": f"{os.cpu_count()} cores, python {sys.version.split()[0]}",
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    print(f"{meta['date']}; code {meta['code']}; {meta['machine']}; load "
          f"{meta['load_average_at_start']}")
    if not (DBT_PROJECT_DIR / "target" / "manifest.json").exists():
        sys.exit("no dbt manifest: run `refresh-assets dbt prepare` (or `make demo`) first")

    folder = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    folder.chmod(0o755)  # the embedded cluster runs as the postgres OS user
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    site = None
    settings = None
    log_path = folder / "dagster.log"
    saved_stderr = os.dup(2)
    try:
        os.environ.pop("REFRESH_DATABASE_URL", None)
        os.environ.update({
            "REFRESH_HOME": str(folder / "home"), "REFRESH_PG_PORT": str(free_port()),
            "REFRESH_SOURCES_FILE": str(folder / "sources.yaml"),
            "REFRESH_ENTRIES_DIR": str(folder / "entries"),
            "REFRESH_REPORTS_DIR": str(folder / "home" / "reports"),
            "REFRESH_DOCUMENTS_DIR": str(folder / "home" / "documents"),
            **{f"REFRESH_SMTP_{name}": value for name, value in {
                "HOST": "127.0.0.1", "PORT": str(smtp.port), "SECURITY": "none",
                "SENDER": "refresh@example.org", "RECIPIENTS": "cfo@example.org",
                "OPERATORS": "ops@example.org"}.items()}})
        (folder / "entries").mkdir()
        settings = load_settings()
        started = time.perf_counter()
        ready = ensure_database(settings)
        print(f"database: {ready.what_happened} ({time.perf_counter() - started:.1f} s)")
        os.environ.update(runtime_environment(settings, ready.address))
        site = Site()
        print(f"web server: {site.url('/')} (pid {site.process.pid}); SMTP 127.0.0.1:{smtp.port}; "
              f"Dagster's output: {log_path}", flush=True)
        with log_path.open("w") as log:
            os.dup2(log.fileno(), 2)
            try:
                figures = run(args, ready.address, site, inbox, folder)
            finally:
                os.dup2(saved_stderr, 2)
        meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except BaseException:
        traceback.print_exc()
        print(f"(Dagster's output: {log_path})", file=sys.stderr)
        args.keep = True
        raise SystemExit(1) from None
    finally:
        if site is not None:
            site.stop()
        smtp.stop()
        if settings is not None:
            embedded_server(settings).stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    figures["meta"] = meta
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
