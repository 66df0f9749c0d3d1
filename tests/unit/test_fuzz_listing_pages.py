"""Listing pages fuzzed with hypothesis: random markup (text in any script, entities, nested
and unclosed elements, stray end tags, comments, scripts and styles hiding links, links that
lead nowhere) put around the real links of a fixture page (tests/fixtures/pages) changes
nothing the discovery finds; and any markup at all gives documents or none, never an
exception.

The noise goes where a real page's clutter goes (between list items and table rows, between
sections, in the head), never inside the text that describes a link: there it would change
what the link is. What fuzzing found is kept by the `test_finding_*` tests at the end, its
inputs back in the strategies (UNSPLITTABLE_HREFS); the one not fixed is a strict xfail
(KNOWN_MALFORMED_REFERENCE, kept out of the strategies). Derandomized and without an example
database (nothing is written into the checkout)."""

from __future__ import annotations

import html
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from refresh_assets.lib.sources.discovery import EARLIEST_YEAR, LATEST_YEAR, find_documents
from refresh_assets.lib.sources.documents import DOC_TYPES, DiscoveredDocument

# Hypothesis's caches (unicode tables) go to the temporary folder, not the checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "refresh_assets_hypothesis")
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PAGES = Path(__file__).parents[1] / "fixtures" / "pages"
VALLEJO_FILE = "https://www.cityofvallejo.net/common/pages/DisplayFile.aspx?itemId="
CALPERS_REPORTS = "https://www.calpers.ca.gov/docs/actuarial-reports"
# Each page, the URL it was read from, and the documents on it (tests/unit/test_discovery.py
# pins their titles too).
FIXTURES = {
    "city_finance_lists.html": (
        "https://www.cityofvallejo.net/city_hall/departments___divisions/finance",
        [f"{VALLEJO_FILE}{item}" for item in (21004, 19876, 17112, 15550, 13310, 11021)]),
    "calpers_valuations.html": ("file:///saved/calpers.html", [
        f"{CALPERS_REPORTS}/2022/vallejo-city-miscellaneous-1181-2022.pdf",
        f"{CALPERS_REPORTS}/2022/vallejo-city-safety-police-2022.pdf",
        f"{CALPERS_REPORTS}/2021/vallejo-city-miscellaneous-2021.pdf",
        f"{CALPERS_REPORTS}/2020/vallejo-city-safety-fire-2020.pdf",
        f"{CALPERS_REPORTS}/2019/vallejo-city-miscellaneous-2019.pdf",
        f"{CALPERS_REPORTS}/vallejo-pepra-miscellaneous-annual-valuation-report-2018.pdf"]),
}
# Where clutter goes: before a list item, a table row, a heading, the end of a list, table
# body, main, body or head. The top of the body gets links of its own too (see decoys).
SLOT = re.compile(r"(?=<li[\s>]|<tr[\s>]|<h[1-6][\s>]|</ul>|</tbody>|</main>|</body>|</head>)")
BODY_START = "<body>"

# Text of any kind, escaped: words that name documents and years included, since no link
# reads text that sits outside its own line (list item, row) and the headings above it.
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30).map(html.escape)
words = st.sampled_from(["ACFR FY 2020-21", "Budget 2023", "CAFR 2019", "Actuarial Valuation "
                         "as of June 30, 2022 Miscellaneous Plan", "\u6771\u4eac", "\u0639\u0631\u0628\u064a",
                         "\U0001f4b0\u200d", "e\u0301", "\u202eRTL", "PAFR", "OPEB", "2019-21"])
# Findings (see test_finding_*): hrefs urllib cannot split made discovery raise (fixed: in
# ODD_HREFS below); after a second malformed "&#" reference the stdlib parser reads the rest
# of the page as text (not fixed: kept out of the strategies).
UNSPLITTABLE_HREFS = ["http://[::1", "http://[oops]/acfr-2022.pdf",
                      "https://city\uff0egov\uff0facfr-2022.pdf"]
KNOWN_MALFORMED_REFERENCE = "&#;"
entities = st.sampled_from(["&amp;", "&nbsp;", "&ndash;", "&#8212;", "&#x2014;", "&#0;",
                            "&#x110000;", "&#99999999999;", "&bogus;", "&amp", "&",
                            "&lt;a href='x.pdf'&gt;ACFR 2020&lt;/a&gt;"])
# Elements that never label a link outside them (no heading, caption, base or link).
CLOSED_TAGS = ["div", "span", "b", "i", "em", "strong", "small", "u", "font", "center",
               "section", "article", "aside", "nav", "header", "footer", "form", "label",
               "button", "ul", "ol", "li", "p", "blockquote", "pre", "table", "tbody", "tr",
               "td", "dl", "dt", "dd", "figure", "svg", "math", "my-widget", "o:p", "x"]
# Left open, they enclose the rest of the page: only elements that are no link's line.
UNCLOSED_TAGS = ["div", "span", "b", "i", "em", "font", "section", "article", "small", "u",
                 "center", "blockquote", "form", "nav"]
VOID = ["<br>", "<br/>", "<hr>", "<wbr>", "<img src='/logo.png' alt='ACFR 2020'>",
        "<input value='CAFR 2019'>", "<meta name='x' content='ACFR 2021'>", "<img>"]
STRAY_END_TAGS = ["</div>", "</span>", "</p>", "</li>", "</a>", "</td>", "</tr>", "</table>",
                  "</ul>", "</h2>", "</foo>", "</ script>", "</html>", "</body>", "</head>"]
BROKEN = ["<", ">", "<>", "</>", "< div>", "<3", "a < b > c", "<<", ">>", "=\"", "'"]
# Links that are no documents wherever they are: what discovery skips (mailto, javascript,
# tel, data, a fragment, no href) or cannot fetch (ftp), worded as documents.
SKIPPED_LINKS = [
    "<a href='mailto:acfr@city.gov'>ACFR FY 2020-21</a>",
    "<a href='JavaScript:openDoc(\"acfr\")'>CAFR 2019</a>",
    "<a href='tel:+17076484575'>Annual Comprehensive Financial Report 2022</a>",
    "<a href='data:application/pdf;base64,JVBERi0='>ACFR 2022</a>",
    "<a href='#acfr-2019'>ACFR 2019</a>", "<a>ACFR 2018</a>", "<a name='cafr'>CAFR 2017</a>",
    "<a href='  '>ACFR 2016</a>", "<a href=''>CAFR 2015</a>",
    "<a href='ftp://files.city.gov/acfr-2021.pdf'>ACFR 2021</a>",
]
# Links in markup that is not the page's: comments, scripts, styles.
HIDDEN_LINK = "<a href='https://decoy.example/acfr-2020.pdf'>ACFR FY 2019-20</a>"


def attributes(draw) -> str:
    names = draw(st.lists(st.sampled_from(["class", "id", "title", "aria-label", "href",
                                           "style", "data-x", "onclick", "alt", "x"]),
                          max_size=3))
    return "".join(f" {name}=\"{html.escape(draw(any_text | words))}\"" for name in names)


@st.composite
def noise(draw, depth: int = 0) -> str:
    """One piece of clutter."""
    kinds = ["text", "entity", "void", "stray", "broken", "skipped", "comment", "script",
             "style", "cdata", "unclosed"] + (["element"] * 3 if depth < 3 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return draw(any_text | words)
    if kind == "entity":
        return draw(entities)
    if kind == "void":
        return draw(st.sampled_from(VOID))
    if kind == "stray":
        return draw(st.sampled_from(STRAY_END_TAGS))
    if kind == "broken":
        return draw(st.sampled_from(BROKEN))
    if kind == "skipped":
        return draw(st.sampled_from(SKIPPED_LINKS))
    if kind == "comment":
        return f"<!-- {HIDDEN_LINK} {draw(any_text)} -->"
    if kind == "script":
        return (f"<script>var links = \"{HIDDEN_LINK}\"; // {draw(any_text)}\n"
                f"document.write('<a href=\"/acfr-2023.pdf\">ACFR 2023</a>');</script>")
    if kind == "style":
        return f"<style>/* {HIDDEN_LINK} */ .x::after {{ content: '{draw(any_text)}' }}</style>"
    if kind == "cdata":
        return f"<![CDATA[ {draw(any_text)} ]]>"
    if kind == "unclosed":
        return f"<{draw(st.sampled_from(UNCLOSED_TAGS))}{attributes(draw)}>"
    tag = draw(st.sampled_from(CLOSED_TAGS))
    children = draw(st.lists(noise(depth + 1), max_size=3))
    return f"<{tag}{attributes(draw)}>{''.join(children)}</{tag}>"


# Links that lead somewhere but name no document, where no heading is above them yet.
top_links = st.lists(st.sampled_from(["Home", "Contact us", "Calendar", "S\u00edguenos",
                                      "\u6771\u4eac", "\U0001f3db"]).map(
    lambda text: f"<nav><a href='https://decoy.example/{len(text)}'>{text}</a></nav>"),
    max_size=2).map("".join)


@st.composite
def cluttered(draw, page: str) -> str:
    """The page with clutter in some of its slots."""
    pieces = SLOT.split(page)
    out = []
    for piece in pieces:
        if draw(st.booleans()):
            out.append("".join(draw(st.lists(noise(), max_size=4))))
        out.append(piece)
    text = "".join(out)
    top = draw(top_links) + "".join(draw(st.lists(noise(), max_size=2)))
    return text.replace(BODY_START, BODY_START + top, 1)


def documents_of(name: str) -> tuple[str, str, list[DiscoveredDocument]]:
    page = (PAGES / name).read_text()
    base_url, urls = FIXTURES[name]
    clean = find_documents(page, base_url)
    assert [d.url for d in clean] == urls  # the fixture is what this test believes it is
    return page, base_url, clean


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_the_slots_are_outside_every_link_line(name):
    """The clutter is put where this test says: in every slot, outside any link's line."""
    page = (PAGES / name).read_text()
    assert len(SLOT.findall(page)) >= 8
    for match in SLOT.finditer(page):
        before = page[:match.start()]
        for container in ("li", "tr", "p", "a", "caption"):
            opened = len(re.findall(rf"<{container}[\s>]", before))
            assert opened == before.count(f"</{container}>"), (container, match.start())


@pytest.mark.parametrize("name", sorted(FIXTURES))
@FUZZ
@given(data=st.data())
def test_clutter_around_the_links_changes_nothing_found(name, data):
    page, base_url, clean = documents_of(name)
    noisy = data.draw(cluttered(page))
    assert find_documents(noisy, base_url) == clean
    assert find_documents(noisy.encode("utf-8"), base_url) == clean


ODD_HREFS = ["https://exa mple.gov/acfr 2022.pdf", "//cdn.city.gov/acfr-2022.pdf",
             "https://\u2100.gov/acfr-2022.pdf", "http://city.gov:99999999/acfr-2022.pdf",
             "HTTPS://CITY.GOV/ACFR-2022.PDF#page=3", "../../../../acfr-2022.pdf",
             "\x00acfr-2022.pdf", "acfr-2022.pdf?x=\u00e9", "\\\\server\\acfr-2022.pdf",
             "file:///C:/acfr-2022.pdf", "https://user:pass@city.gov/acfr-2022.pdf",
             *UNSPLITTABLE_HREFS]
link_texts = st.sampled_from(["ACFR FY 2021-22", "CAFR 2019", "Download", "PDF", "",
                              "Actuarial Valuation as of June 30, 2021, Miscellaneous Plan",
                              "Budget FY 2022-23", "FY 2099-00", "FY 1899-1900"]) | any_text


@st.composite
def any_markup(draw) -> str:
    """Markup of any shape: links with any href and text, any tags, headings, tables,
    captions, definition lists, a <base>, all possibly unclosed or out of order."""
    tags = ["a", "h1", "h2", "h3", "h6", "table", "tr", "td", "caption", "li", "ul", "p",
            "dt", "dd", "dl", "div", "base", "img", "script", "style", "title", "figcaption"]
    pieces = []
    for _ in range(draw(st.integers(min_value=0, max_value=30))):
        kind = draw(st.sampled_from(["open", "close", "link", "text", "noise"]))
        if kind == "open":
            tag = draw(st.sampled_from(tags))
            href = f" href=\"{html.escape(draw(st.sampled_from(ODD_HREFS) | any_text))}\"" \
                if tag in ("a", "base") and draw(st.booleans()) else ""
            pieces.append(f"<{tag}{href}{attributes(draw)}>")
        elif kind == "close":
            pieces.append(f"</{draw(st.sampled_from(tags))}>")
        elif kind == "link":
            href = draw(st.sampled_from(ODD_HREFS) | any_text)
            pieces.append(f"<a href=\"{html.escape(href)}\"{attributes(draw)}>"
                          f"{draw(link_texts)}</a>")
        elif kind == "text":
            pieces.append(draw(link_texts | words))
        else:
            pieces.append(draw(noise()))
    return "".join(pieces)


@FUZZ
@given(markup=any_markup() | st.text(max_size=300),
       base_url=st.sampled_from(["https://www.city.gov/finance/", "file:///saved/page.html",
                                 "https://www.city.gov"]))
def test_any_markup_gives_documents_or_none_never_an_exception(markup, base_url):
    for page in (markup, markup.encode("utf-8", "surrogatepass")):
        documents = find_documents(page, base_url)
        assert len({d.url for d in documents}) == len(documents)
        for document in documents:
            assert document.doc_type in DOC_TYPES
            assert EARLIEST_YEAR <= document.fiscal_year <= LATEST_YEAR
            parts = urlsplit(document.url)
            assert parts.scheme in ("http", "https", "file") and not parts.fragment
            assert document.title.strip()


@FUZZ
@given(content=st.binary(max_size=400))
def test_any_bytes_give_documents_or_none_never_an_exception(content):
    assert isinstance(find_documents(content, "https://www.city.gov/finance/"), list)


# What fuzzing found. Fixed: the hrefs (UNSPLITTABLE_HREFS, in ODD_HREFS above). Not fixed,
# a strict xfail: the malformed reference (KNOWN_MALFORMED_REFERENCE, kept out of the
# strategies).
@pytest.mark.parametrize(("markup", "also_found"), [
    *((f"<a href='{href}'>ACFR 2022</a>", []) for href in UNSPLITTABLE_HREFS),
    # An unreadable <base> is ignored, as browsers do: links resolve against the page's URL.
    ("<base href='http://[::1'><a href='acfr.pdf'>ACFR 2022</a>",
     ["https://www.city.gov/finance/acfr.pdf"])],
    ids=["unclosed_bracket", "bracketed_name", "nfkc_netloc", "base_href"])
def test_finding_an_unsplittable_href_costs_that_link_alone(markup, also_found):
    page = f"<ul><li><a href='/acfr-2021.pdf'>ACFR 2021</a></li><li>{markup}</li></ul>"
    urls = [d.url for d in find_documents(page, "https://www.city.gov/finance/")]
    assert urls == [*also_found, "https://www.city.gov/acfr-2021.pdf"]


@pytest.mark.xfail(strict=True,
                   reason="limitation: CPython 3.11's html.parser (BeautifulSoup's 'html.parser', "
                          "the only parser installed: neither lxml nor html5lib is a dependency) "
                          "stops at a second malformed '&#' character reference and hands the "
                          "rest of the page over as text, so the links after it are lost")
def test_finding_malformed_references_lose_no_link():
    page, base_url, clean = documents_of("calpers_valuations.html")
    noisy = page.replace("<body>", f"<body>{KNOWN_MALFORMED_REFERENCE}", 1).replace(
        "<h2>Reports by plan</h2>", f"{KNOWN_MALFORMED_REFERENCE}<h2>Reports by plan</h2>")
    assert find_documents(noisy, base_url) == clean
