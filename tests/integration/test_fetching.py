"""The polite fetcher against a real HTTP server on 127.0.0.1: what it sends, what it refuses to
request, and how each failure is reported. No database needed."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from refresh_assets.lib.sources.fetching import FetchError, FetchPolicy, PoliteFetcher
from tests import http_fixtures
from tests.http_fixtures import Reply, ServedSite

# The fixture, bound by assignment: an imported name would be "redefined" (ruff F811) by every
# test's `served_site` parameter.
served_site = http_fixtures.served_site

PAGE = "<html><body><a href='/acfr-2024.pdf'>ACFR 2024</a></body></html>"
PDF = b"%PDF-1.7\n" + b"0" * 2000 + b"\n%%EOF\n"
USER_AGENT = "refresh-assets-test/1.0 (+mailto:ops@example.org)"


def policy(**changes) -> FetchPolicy:
    base = FetchPolicy(user_agent=USER_AGENT, allowed_hosts=frozenset({"127.0.0.1"}),
                       connect_timeout=2.0, read_timeout=2.0, host_intervals={"127.0.0.1": 0.0},
                       retries=3, backoff_seconds=0.01)
    return dataclasses.replace(base, **changes)


def fetch_error(call, *args, **kwargs) -> FetchError:
    with pytest.raises(FetchError) as caught:
        call(*args, **kwargs)
    assert "\n" not in str(caught.value)
    return caught.value


def test_etag_turns_the_second_check_into_a_304(served_site: ServedSite):
    served_site.route("/finance", PAGE, headers={"ETag": '"v1"'})
    with PoliteFetcher(policy()) as fetcher:
        first = fetcher.fetch_page(served_site.url("/finance"))
        second = fetcher.fetch_page(served_site.url("/finance"), etag=first.etag)

    assert (first.status, first.not_modified, first.body, first.etag) == (200, False, PAGE.encode(), '"v1"')
    assert first.sha256 == hashlib.sha256(PAGE.encode()).hexdigest()
    assert first.bytes_received == len(PAGE)
    assert first.content_type == "text/html; charset=utf-8"
    assert (second.status, second.not_modified, second.body, second.sha256) == (304, True, None, None)
    assert second.bytes_received == 0 and second.etag == '"v1"'
    assert served_site.requests_to("/finance")[1].headers["if-none-match"] == '"v1"'


def test_last_modified_is_sent_back_as_if_modified_since(served_site: ServedSite):
    stamp = "Wed, 01 Jan 2025 10:00:00 GMT"
    served_site.route("/finance", PAGE, headers={"Last-Modified": stamp})
    with PoliteFetcher(policy()) as fetcher:
        first = fetcher.fetch_page(served_site.url("/finance"))
        second = fetcher.fetch_page(served_site.url("/finance"), last_modified=first.last_modified)

    assert first.last_modified == stamp and not first.not_modified
    assert second.not_modified and second.last_modified == stamp
    assert served_site.requests_to("/finance")[1].headers["if-modified-since"] == stamp


def test_changed_content_changes_the_checksum(served_site: ServedSite):
    with PoliteFetcher(policy()) as fetcher:
        served_site.route("/finance", PAGE)
        before = fetcher.fetch_page(served_site.url("/finance"))
        again = fetcher.fetch_page(served_site.url("/finance"))
        served_site.route("/finance", PAGE.replace("2024", "2025"))
        after = fetcher.fetch_page(served_site.url("/finance"))

    assert before.sha256 == again.sha256 != after.sha256


def test_transient_server_errors_are_retried(served_site: ServedSite):
    page = Reply(200, PAGE.encode(), {"Content-Type": "text/html"})
    served_site.replies("/finance", [Reply(500), Reply(500), page])
    with PoliteFetcher(policy(retries=3)) as fetcher:
        result = fetcher.fetch_page(served_site.url("/finance"))

    assert result.status == 200 and result.body == PAGE.encode()
    assert len(served_site.requests_to("/finance")) == 3


def test_a_persistent_503_fails_transient_after_the_configured_attempts(served_site: ServedSite):
    served_site.replies("/finance", [Reply(503)])
    with PoliteFetcher(policy(retries=2)) as fetcher:
        error = fetch_error(fetcher.fetch_page, served_site.url("/finance"))

    assert (error.kind, error.status, error.transient) == ("http_status", 503, True)
    assert "HTTP 503 after 3 attempts" in str(error) and str(error).startswith(served_site.url("/finance"))
    assert len(served_site.requests_to("/finance")) == 3


def test_retry_after_is_honoured_up_to_the_cap(served_site: ServedSite):
    page = Reply(200, PAGE.encode(), {"Content-Type": "text/html"})
    served_site.replies("/finance", [Reply(429, headers={"Retry-After": "3600"}), page])
    with PoliteFetcher(policy(max_retry_after_seconds=0.3)) as fetcher:
        assert fetcher.fetch_page(served_site.url("/finance")).status == 200

    first, second = (seen.received_at for seen in served_site.requests_to("/finance"))
    assert second - first >= 0.3 * 0.9


def test_a_404_is_not_retried_nor_transient(served_site: ServedSite):
    with PoliteFetcher(policy()) as fetcher:
        error = fetch_error(fetcher.fetch_page, served_site.url("/moved"))

    assert (error.kind, error.status, error.transient) == ("http_status", 404, False)
    assert len(served_site.requests_to("/moved")) == 1


def test_a_server_that_does_not_answer_times_out(served_site: ServedSite):
    served_site.route("/slow", PAGE, delay=5)
    started = time.monotonic()
    with PoliteFetcher(policy(read_timeout=0.3, retries=1, backoff_seconds=0.01)) as fetcher:
        error = fetch_error(fetcher.fetch_page, served_site.url("/slow"))

    assert (error.kind, error.transient) == ("timeout", True)
    assert "after 2 attempts" in str(error)
    assert len(served_site.requests_to("/slow")) == 2
    assert time.monotonic() - started < 3


def test_a_redirect_to_another_host_is_not_followed(served_site: ServedSite):
    served_site.redirect("/finance", served_site.url("/elsewhere", host="localhost"))
    with PoliteFetcher(policy()) as fetcher:
        error = fetch_error(fetcher.fetch_page, served_site.url("/finance"))

    assert (error.kind, error.transient) == ("redirect_off_site", False)
    assert "localhost" in str(error)
    assert "/elsewhere" not in served_site.paths()


def test_redirects_within_the_site_are_followed_and_each_hop_checked(served_site: ServedSite):
    served_site.route("/robots.txt", "User-agent: *\nDisallow: /private\n", content_type="text/plain")
    served_site.redirect("/old", "/new")
    served_site.route("/new", PAGE)
    served_site.redirect("/sneaky", "/private/page")
    served_site.redirect("/loop", "/loop")
    with PoliteFetcher(policy(max_redirects=3)) as fetcher:
        result = fetcher.fetch_page(served_site.url("/old"))
        disallowed = fetch_error(fetcher.fetch_page, served_site.url("/sneaky"))
        looping = fetch_error(fetcher.fetch_page, served_site.url("/loop"))

    assert result.final_url == served_site.url("/new") and result.url == served_site.url("/old")
    assert disallowed.kind == "robots_disallowed" and "/private/page" not in served_site.paths()
    assert looping.kind == "too_many_redirects"
    assert len(served_site.requests_to("/loop")) == 4


def test_a_host_outside_the_allowed_hosts_is_never_requested(served_site: ServedSite):
    with PoliteFetcher(policy()) as fetcher:
        error = fetch_error(fetcher.fetch_page, served_site.url("/finance", host="localhost"))

    assert error.kind == "host_not_allowed"
    assert served_site.requests == []


def test_a_huge_body_is_cut_off_at_the_cap(served_site: ServedSite):
    served_site.replies("/huge", [Reply(200, headers={"Content-Type": "text/html"}, filler_bytes=20_000_000)])
    served_site.replies("/announced", [Reply(200, headers={"Content-Type": "text/html"},
                                             filler_bytes=20_000_000, declare_length=True)])
    started = time.monotonic()
    with PoliteFetcher(policy(max_page_bytes=1_000_000)) as fetcher:
        streamed = fetch_error(fetcher.fetch_page, served_site.url("/huge"))
        announced = fetch_error(fetcher.fetch_page, served_site.url("/announced"))

    assert (streamed.kind, streamed.transient) == ("too_large", False)
    assert 1_000_000 < streamed.bytes_received < 2_000_000
    assert announced.kind == "too_large" and announced.bytes_received == 0
    assert time.monotonic() - started < 5


def test_wrong_content_types_are_refused(served_site: ServedSite, tmp_path: Path):
    served_site.route("/listing", PDF, content_type="application/pdf")
    served_site.route("/acfr.pdf", PAGE, content_type="text/html; charset=utf-8")
    with PoliteFetcher(policy()) as fetcher:
        page = fetch_error(fetcher.fetch_page, served_site.url("/listing"))
        document = fetch_error(fetcher.download, served_site.url("/acfr.pdf"), tmp_path / "documents")

    assert page.kind == document.kind == "content_type"
    assert "application/pdf" in str(page) and "text/html" in str(document)
    assert not any(p.is_file() for p in (tmp_path / "documents").rglob("*"))


def test_robots_txt_disallow_is_honoured_without_requesting_the_page(served_site: ServedSite):
    served_site.route("/robots.txt", "User-agent: refresh-assets-test\nDisallow: /finance\n",
                      content_type="text/plain")
    served_site.route("/finance", PAGE)
    served_site.route("/other", PAGE)
    with PoliteFetcher(policy()) as fetcher:
        error = fetch_error(fetcher.fetch_page, served_site.url("/finance"))
        fetcher.fetch_page(served_site.url("/other"))

    assert (error.kind, error.transient) == ("robots_disallowed", False)
    assert served_site.paths() == ["/robots.txt", "/other"]  # fetched once, cached
    assert served_site.requests[0].headers["user-agent"] == USER_AGENT


def test_a_missing_robots_txt_allows_all(served_site: ServedSite):
    served_site.route("/finance", PAGE)
    with PoliteFetcher(policy()) as fetcher:
        assert fetcher.fetch_page(served_site.url("/finance")).status == 200

    assert served_site.paths() == ["/robots.txt", "/finance"]


@pytest.mark.parametrize(("robots", "kind", "transient"), [
    (Reply(403), "robots_disallowed", False),
    (Reply(401), "robots_disallowed", False),
    (Reply(503), "http_status", True),
])
def test_a_forbidden_or_failing_robots_txt_keeps_the_fetcher_out(served_site: ServedSite, robots: Reply,
                                                                 kind: str, transient: bool):
    served_site.replies("/robots.txt", [robots])
    served_site.route("/finance", PAGE)
    with PoliteFetcher(policy(retries=1)) as fetcher:
        error = fetch_error(fetcher.fetch_page, served_site.url("/finance"))

    assert (error.kind, error.transient) == (kind, transient)
    assert "/finance" not in served_site.paths()
    if transient:
        assert "robots.txt" in str(error)


def test_requests_to_one_host_are_spaced(served_site: ServedSite):
    served_site.route("/finance", PAGE)
    with PoliteFetcher(policy(host_intervals={}, min_interval_seconds=0.3)) as fetcher:
        fetcher.fetch_page(served_site.url("/finance"))
        fetcher.fetch_page(served_site.url("/finance"))

    times = [seen.received_at for seen in served_site.requests]
    assert len(times) == 3  # robots.txt, then the page twice
    assert all(later - earlier >= 0.3 * 0.9 for earlier, later in zip(times, times[1:], strict=False))


def test_threads_checking_one_host_still_take_turns(served_site: ServedSite):
    served_site.route("/robots.txt", "User-agent: *\nAllow: /\n", content_type="text/plain")
    for n in range(4):
        served_site.route(f"/city-{n}", PAGE)
    with PoliteFetcher(policy(host_intervals={"127.0.0.1": 0.2})) as fetcher, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(fetcher.fetch_page, [served_site.url(f"/city-{n}") for n in range(4)]))

    assert all(result.status == 200 for result in results)
    assert served_site.paths().count("/robots.txt") == 1
    times = sorted(seen.received_at for seen in served_site.requests)
    assert all(later - earlier >= 0.2 * 0.9 for earlier, later in zip(times, times[1:], strict=False))


def test_robots_crawl_delay_widens_the_spacing(served_site: ServedSite):
    served_site.route("/robots.txt", "User-agent: *\nCrawl-delay: 1\n", content_type="text/plain")
    served_site.route("/finance", PAGE)
    with PoliteFetcher(policy()) as fetcher:
        fetcher.fetch_page(served_site.url("/finance"))
        fetcher.fetch_page(served_site.url("/finance"))

    first, second = (seen.received_at for seen in served_site.requests_to("/finance"))
    assert second - first >= 0.9


def test_the_user_agent_is_sent_on_every_request(served_site: ServedSite, tmp_path: Path):
    served_site.route("/finance", PAGE)
    served_site.route("/acfr.pdf", PDF, content_type="application/pdf")
    with PoliteFetcher(policy()) as fetcher:
        fetcher.fetch_page(served_site.url("/finance"))
        fetcher.download(served_site.url("/acfr.pdf"), tmp_path)

    assert served_site.paths() == ["/robots.txt", "/finance", "/acfr.pdf"]
    assert {seen.headers["user-agent"] for seen in served_site.requests} == {USER_AGENT}


def test_documents_are_stored_once_under_their_checksum(served_site: ServedSite, tmp_path: Path):
    served_site.route("/acfr-2024.pdf", PDF, content_type="application/pdf")
    served_site.route("/acfr-2024-copy.pdf", PDF, content_type="application/pdf")
    documents = tmp_path / "documents"
    with PoliteFetcher(policy()) as fetcher:
        first = fetcher.download(served_site.url("/acfr-2024.pdf"), documents)
        copy = fetcher.download(served_site.url("/acfr-2024-copy.pdf"), documents)

    sha256 = hashlib.sha256(PDF).hexdigest()
    assert first.path == copy.path == documents / "sha256" / sha256[:2] / f"{sha256}.pdf"
    assert (first.sha256, first.bytes, first.content_type) == (sha256, len(PDF), "application/pdf")
    assert copy.url == served_site.url("/acfr-2024-copy.pdf")
    assert first.path.read_bytes() == PDF
    assert [p for p in documents.rglob("*") if p.is_file()] == [first.path]  # no temp files left


def test_an_unwritable_documents_folder_is_a_storage_error(served_site: ServedSite, tmp_path: Path):
    served_site.route("/acfr.pdf", PDF, content_type="application/pdf")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    documents = locked / "documents"
    try:
        if os.access(locked, os.W_OK):  # root ignores the mode: block with a file as the parent
            blocker = tmp_path / "not-a-folder"
            blocker.write_text("")
            documents = blocker / "documents"
        with PoliteFetcher(policy()) as fetcher:
            error = fetch_error(fetcher.download, served_site.url("/acfr.pdf"), documents)
    finally:
        locked.chmod(0o700)

    assert (error.kind, error.transient) == ("storage", False)
    assert f"cannot write to {documents}" in str(error) and "REFRESH_DOCUMENTS_DIR" in str(error)
    assert "/acfr.pdf" not in served_site.paths()  # not downloaded when it cannot be kept
