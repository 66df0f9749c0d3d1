"""`refresh-assets discover` as a user runs it: on a saved page, with --base-url, against a real
HTTP server on 127.0.0.1, and on a page it cannot read. No database needed."""

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

PAGES = Path(__file__).parents[1] / "fixtures" / "pages"
CALPERS_REPORTS = "https://www.calpers.ca.gov/docs/actuarial-reports"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keeps the test output free of access logs."""


@pytest.fixture
def pages_server() -> Iterator[str]:
    """The fixture pages served over HTTP on a free port; yields the server's root URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(PAGES)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_json_of_a_saved_page_keeps_its_absolute_base():
    result = run_cli("discover", str(PAGES / "calpers_valuations.html"), "--json")
    documents = json.loads(result.stdout)
    assert [(doc["doc_type"], doc["fiscal_year"], doc["url"]) for doc in documents] == [
        ("calpers_valuation", 2022, f"{CALPERS_REPORTS}/2022/vallejo-city-miscellaneous-1181-2022.pdf"),
        ("calpers_valuation", 2022, f"{CALPERS_REPORTS}/2022/vallejo-city-safety-police-2022.pdf"),
        ("calpers_valuation", 2021, f"{CALPERS_REPORTS}/2021/vallejo-city-miscellaneous-2021.pdf"),
        ("calpers_valuation", 2020, f"{CALPERS_REPORTS}/2020/vallejo-city-safety-fire-2020.pdf"),
        ("calpers_valuation", 2019, f"{CALPERS_REPORTS}/2019/vallejo-city-miscellaneous-2019.pdf"),
        ("calpers_valuation", 2018,
         f"{CALPERS_REPORTS}/vallejo-pepra-miscellaneous-annual-valuation-report-2018.pdf"),
    ]
    assert documents[3] == {
        "doc_type": "calpers_valuation", "fiscal_year": 2020,
        "url": f"{CALPERS_REPORTS}/2020/vallejo-city-safety-fire-2020.pdf",
        "title": "Safety Fire Plan Actuarial Valuation as of June 30, 2020",
    }


def test_relative_links_of_a_saved_page_resolve_to_its_file_uri():
    page = PAGES / "several_years.html"
    result = run_cli("discover", str(page), "--json", "--type", "acfr")
    urls = [doc["url"] for doc in json.loads(result.stdout)]
    assert urls[0] == (PAGES / "reports" / "ACFR_FY2023.pdf").as_uri()
    assert len(urls) == 5


def test_base_url_resolves_a_saved_copy_of_a_live_page():
    result = run_cli("discover", str(PAGES / "city_finance_lists.html"), "--json",
                     "--base-url", "https://www.cityofvallejo.net/city_hall/departments___divisions/finance")
    documents = json.loads(result.stdout)
    assert [(doc["fiscal_year"], doc["url"]) for doc in documents] == [
        (year, f"https://www.cityofvallejo.net/common/pages/DisplayFile.aspx?itemId={item}")
        for year, item in [(2023, 21004), (2022, 19876), (2021, 17112), (2020, 15550), (2019, 13310),
                           (2018, 11021)]
    ]
    assert {doc["doc_type"] for doc in documents} == {"acfr"}


def test_a_page_served_over_http(pages_server):
    result = run_cli("discover", f"{pages_server}/several_years.html")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["doc_type", "year", "title", "url"]
    assert lines[1].split()[:2] == ["acfr", "2023"]
    assert lines[1].endswith(f"{pages_server}/reports/ACFR_FY2023.pdf")
    assert any(line.startswith("calpers_valuation  2022  CalPERS Actuarial Valuation") for line in lines)
    assert lines[-1] == f"7 document(s) found on {pages_server}/several_years.html"


def test_type_filter_over_http(pages_server):
    result = run_cli("discover", f"{pages_server}/several_years.html", "--json",
                     "--type", "calpers_valuation")
    assert [doc["url"] for doc in json.loads(result.stdout)] == [
        f"{CALPERS_REPORTS}/2022/napa-springs-city-miscellaneous-2022.pdf",
        f"{CALPERS_REPORTS}/2022/napa-springs-city-safety-2022.pdf",
    ]


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "finance.html"
    result = run_cli("discover", str(missing), check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: cannot read {missing}: No such file or directory; pass a saved HTML file or an http(s) URL\n"
    )


def test_a_missing_page_on_the_server_is_one_line_naming_it(pages_server):
    url = f"{pages_server}/no-such-page.html"
    result = run_cli("discover", url, "--json", check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: cannot fetch {url}: HTTP 404 File not found; "
        "check the URL, or save the page and pass the file\n"
    )
