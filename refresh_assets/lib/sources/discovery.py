"""Finds ACFRs and CalPERS actuarial valuation reports among the links of a listing page.

Pure logic over the page's HTML (BeautifulSoup with the stdlib parser), so any saved page
can be replayed in tests; `read_page` is the one function that touches a file or the network.

A link is read together with what surrounds it, nearest first: its own text (unless it is only
"Download", "PDF", an icon...), its `title`/`aria-label`/img alt, the text around it (its table
row, list item, paragraph...), then the `<dt>`, table caption and headings above it. The type
comes from these texts read together up to the nearest that names one, and an exclusion (a PAFR,
a budget...) in what was read wins; the fiscal year comes from the nearest text that names one.
So a bare "FY 2022-23" under the heading "Annual Comprehensive Financial Reports" is the ACFR
for 2023, and under "Popular Annual Financial Report" nothing. A link with no type or no year
is no document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import requests
from bs4 import BeautifulSoup, NavigableString, Tag

from refresh_assets.lib.sources.documents import ACFR, CALPERS_VALUATION, DOC_TYPES, DiscoveredDocument

USER_AGENT = "refresh-assets (+https://github.com/refresh-assets)"
PAGE_TIMEOUT_SECONDS = 30
EARLIEST_YEAR, LATEST_YEAR = 1990, 2100

_ACFR_NAMES = re.compile(
    r"annual\s+comprehensive\s+financial\s+reports?"
    r"|comprehensive\s+annual\s+financial\s+reports?"
    r"|(?<![a-z])(?:acfr|cafr)s?(?![a-z])",
    re.IGNORECASE,
)
# "Annual Financial Report" alone is also what small cities call their basic statements.
_ANNUAL_FINANCIAL_REPORT = re.compile(r"\bannual\s+financial\s+reports?\b", re.IGNORECASE)
_COMPREHENSIVE = re.compile(r"\bcomprehensive\b", re.IGNORECASE)
_VALUATION_NAMES = re.compile(r"\bactuarial\s+valuation|\bannual\s+valuation\s+reports?\b", re.IGNORECASE)
# A valuation is CalPERS's only when the text says whose plan it values.
_PLAN_CONTEXT = re.compile(
    r"\bcal\s?pers\b|\bpers\b|public\s+employees'?\s+retirement|\bpension|\bplans?\b"
    r"|\bmiscellaneous\b|\bsafety\b|\bpolice\b|\bfire\b|\bpepra\b|\bclassic\b",
    re.IGNORECASE,
)
# What city finance pages list beside the ACFR, and valuations that are not CalPERS's funding
# valuation (OPEB, GASB 68 accounting reports).
_EXCLUDED = re.compile(
    r"\bpopular\b|(?<![a-z])pafrs?(?![a-z])|\bbudgets?\b|\bsingle\s+audits?\b|\bmid-?\s?year\b"
    r"|\bgann\b|\bappropriations?\s+limits?\b|\binvestments?\b|\bquarterly\b|\bmonthly\b"
    r"|\bopeb\b|\bgasb\s*(?:no\.?\s*)?(?:68|75)\b|\bretiree\b|\bpost-?\s?employment\b|\bhealth\b"
    r"|\bletter\b|\bmemorandum\b|\bpresentation\b|\bstaff\s+report\b|\bagenda\b",
    re.IGNORECASE,
)

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DASHES = "-\u2013\u2014/"
# One year expression; the alternatives are tried in this order at each position.
_YEAR_EXPRESSION = re.compile(
    rf"""
    \b{_MONTH}\s+\d{{1,2}},?\s+(?P<date_year>\d{{4}})(?!\d)
    | (?<![\d/])\d{{1,2}}[/-]\d{{1,2}}[/-](?P<numeric_date_year>\d{{4}}|\d{{2}})(?![\d/])
    | (?P<fy_prefix>(?<![a-z])fy\s*|\bfiscal\s+years?\s+)?
      (?<!\d)(?P<start>\d{{4}}|\d{{2}})\s*[{_DASHES}]\s*(?P<end>\d{{4}}|\d{{2}})(?![\d/])
    | (?<![a-z])fy\s*'?(?P<fy_short>\d{{2}})(?!\d)
    | (?<!\d)(?P<year>\d{{4}})(?!\d)
    """,
    re.IGNORECASE | re.VERBOSE,
)
_LIST_SEPARATOR = re.compile(r"\s*(?:,\s*(?:and\b|&)?|&|\band\b)\s*", re.IGNORECASE)

_GENERIC_WORDS = frozenset({
    "click", "here", "download", "view", "open", "pdf", "link", "read", "more", "the", "this",
    "document", "file", "icon", "report",
})
_FILE_SIZE = re.compile(r"\d+(?:\.\d+)?\s*[km]b\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# The elements whose text labels the links inside them.
_CONTAINERS = ("tr", "li", "dd", "dt", "p", "caption", "figcaption", *_HEADINGS)
# What separates one link's label from the next in a line of links: "CAFR 2020: PDF | CAFR 2019: PDF".
_SEPARATOR_CHARACTERS = " |:;,\u2013\u2014\u00b7\u2022"
_SPACE_INSIDE_PUNCTUATION = re.compile(r"(?<=\() | (?=[.,;:!?)])")
_SKIPPED_SCHEMES = ("mailto:", "javascript:", "tel:", "data:")


class PageUnreadable(Exception):
    """The listing page could not be read; the message names it and what to do."""


def document_type(title: str) -> str | None:
    """ACFR, CALPERS_VALUATION, or None when the text names neither or names something listed
    beside them (PAFR, budget, single audit, OPEB valuation...), which wins over the type."""
    if _EXCLUDED.search(title):
        return None
    if _ACFR_NAMES.search(title) or (
        _ANNUAL_FINANCIAL_REPORT.search(title) and _COMPREHENSIVE.search(title)
    ):
        return ACFR
    if _VALUATION_NAMES.search(title) and _PLAN_CONTEXT.search(title):
        return CALPERS_VALUATION
    return None


@dataclass(frozen=True)
class _YearMention:
    start: int
    end: int
    year: int
    is_date: bool


def fiscal_year_of(text: str, doc_type: str) -> int | None:
    """The fiscal year a text names, as the year it ends ("FY 2022-23" -> 2023).

    The first year expression is the report's own ("ACFR FY 2021-22 (restated FY 2020-21)"
    -> 2022). A list of years ("CAFRs 2015, 2016 and 2017", "June 30, 2022 and 2021") is one
    expression naming the latest. A pair must be consecutive years ("2019-21" is a range, no
    year); two-digit pairs count only after "FY". For a CalPERS valuation a full date wins
    anywhere in the text, as it is the valuation date ("... as of June 30, 2022" -> 2022).
    """
    if doc_type not in DOC_TYPES:
        raise ValueError(f"unknown document type {doc_type!r}: expected one of {', '.join(DOC_TYPES)}")
    mentions = list(_year_mentions(text))
    if not mentions:
        return None
    if doc_type == CALPERS_VALUATION:
        dates = [mention for mention in mentions if mention.is_date]
        if dates:
            return dates[0].year
    listed = [mentions[0]]
    for mention in mentions[1:]:
        if not _LIST_SEPARATOR.fullmatch(text[listed[-1].end:mention.start]):
            break
        listed.append(mention)
    return max(mention.year for mention in listed)


def _year_mentions(text: str) -> Iterator[_YearMention]:
    for match in _YEAR_EXPRESSION.finditer(text):
        year = _year_of(match)
        if year is not None and EARLIEST_YEAR <= year <= LATEST_YEAR:
            is_date = match["date_year"] is not None or match["numeric_date_year"] is not None
            yield _YearMention(match.start(), match.end(), year, is_date)


def _year_of(match: re.Match[str]) -> int | None:
    if match["date_year"]:
        return int(match["date_year"])
    if match["numeric_date_year"]:
        return _full_year(match["numeric_date_year"])
    if match["fy_short"]:
        return _full_year(match["fy_short"])
    if match["year"]:
        return int(match["year"])
    start, end = match["start"], match["end"]
    if len(start) == len(end) == 2 and not match["fy_prefix"]:
        return None
    first = _full_year(start)
    ending = int(end) if len(end) == 4 else (first + 1) // 100 * 100 + int(end)
    return ending if ending == first + 1 else None


def _full_year(digits: str) -> int:
    if len(digits) == 4:
        return int(digits)
    two_digits = int(digits)
    return (1900 if two_digits >= EARLIEST_YEAR % 100 else 2000) + two_digits


def find_documents(html: str | bytes, base_url: str,
                   doc_types: Iterable[str] = DOC_TYPES) -> list[DiscoveredDocument]:
    """The documents linked from a listing page, one per URL, sorted by (doc_type, fiscal year
    latest first, url). URLs are absolute (against `<base href>`, else base_url), without
    fragments. When a URL is linked twice, the link that says the most by itself wins."""
    wanted = set(doc_types)
    unknown = wanted - set(DOC_TYPES)
    if unknown:
        raise ValueError(f"unknown document type(s) {sorted(unknown)}: expected {', '.join(DOC_TYPES)}")
    soup = BeautifulSoup(html, "html.parser")
    page_base = _page_base(soup, base_url)
    best: dict[str, tuple[tuple[int, int], DiscoveredDocument]] = {}
    texts = _PageTexts()
    for link, headings in _links_with_headings(soup, texts):
        href = link["href"].strip()
        if _is_skipped(href):
            continue
        described = _describe(link, headings, texts)
        if described is None or described[1] not in wanted:
            continue
        # Resolved only for the few links that are documents: urljoin is slow.
        url = _absolute_url(href, page_base)
        if url is None:
            continue
        rank, doc_type, fiscal_year, title = described
        if url not in best or rank < best[url][0]:
            best[url] = (rank, DiscoveredDocument(doc_type, fiscal_year, url, title))
    documents = [document for _, document in best.values()]
    return sorted(documents, key=lambda doc: (doc.doc_type, -doc.fiscal_year, doc.url))


def _page_base(soup: BeautifulSoup, base_url: str) -> str:
    """The page's `<base href>` against base_url; a base urllib cannot read (unbalanced
    brackets, a host invalid under NFKC) is ignored, as browsers ignore an invalid one."""
    base = next((tag for tag in _tags(soup) if tag.name == "base" and tag.get("href") is not None), None)
    if base is None:
        return base_url
    try:
        return urljoin(base_url, base["href"].strip())
    except ValueError:
        return base_url


def _is_skipped(href: str) -> bool:
    return not href or href.startswith("#") or href.lower().startswith(_SKIPPED_SCHEMES)


def _absolute_url(href: str, page_base: str) -> str | None:
    """None for a link that is no fetchable URL, including one urllib cannot read: that
    link alone is skipped."""
    try:
        url, _fragment = urldefrag(urljoin(page_base, href))
        scheme = urlsplit(url).scheme
    except ValueError:
        return None
    return url if scheme in ("http", "https", "file") else None


def _links_with_headings(soup: BeautifulSoup, texts: _PageTexts) -> Iterator[tuple[Tag, list[str]]]:
    """Each link with the texts of the headings above it, nearest first: the nearest heading,
    then the nearest one above that of a higher rank, and so on (one pass over the page, each
    heading's text read once)."""
    open_headings: list[tuple[int, str]] = []
    for element in _tags(soup):
        if element.name == "a":
            if element.get("href") is not None:
                yield element, [text for _, text in reversed(open_headings)]
        elif element.name in _HEADINGS:
            level = int(element.name[1])
            while open_headings and open_headings[-1][0] >= level:
                open_headings.pop()
            open_headings.append((level, texts.text(element)))


def _describe(link: Tag, headings: list[str],
              texts: _PageTexts) -> tuple[tuple[int, int], str, int, str] | None:
    """The (rank, doc_type, fiscal_year, title) of the document a link points to, ranked by how
    far from the link its description had to be looked for (nearest first), then by the longer
    title; None if it is no document."""
    contexts = _contexts(link, headings, texts)
    doc_type, type_depth = _nearest_type(contexts)
    if doc_type is None:
        return None
    year_depth, fiscal_year = next(
        ((depth, year) for depth, context in enumerate(contexts)
         if (year := fiscal_year_of(context, doc_type)) is not None),
        (None, None),
    )
    if fiscal_year is None:
        return None
    used = contexts[:max(type_depth, year_depth) + 1]
    title = _title(used)
    return (len(used), -len(title)), doc_type, fiscal_year, title


def _contexts(link: Tag, headings: list[str], texts: _PageTexts) -> list[str]:
    """The texts that describe a link, nearest first (see the module docstring)."""
    own_text = _text(link)
    own_is_generic = _is_generic(own_text)
    inline = [] if own_is_generic else [own_text]
    label = _label(link)
    if label:
        inline.append(label)
    enclosing = _enclosing(link)
    around = texts.text_around(link, enclosing, include_own=not own_is_generic)
    if around and around not in inline:
        inline.append(around)
    above = [*_definition_term(enclosing.get("dd"), texts), *_caption(link, enclosing.get("table"), texts),
             *headings]
    return inline + [text for text in above if text]


def _nearest_type(contexts: list[str]) -> tuple[str | None, int]:
    """The type named by the link read with its context up to the nearest level that names one;
    an exclusion anywhere in what was read (a PAFR row, a "Budget" heading) means no document."""
    for depth in range(len(contexts)):
        doc_type = document_type(" ".join(contexts[:depth + 1]))
        if doc_type:
            return doc_type, depth
    return None, len(contexts)


def _title(used: list[str]) -> str:
    """The texts used, outermost first (headings, then the link's line); a text already inside
    another is left out."""
    texts = list(dict.fromkeys(reversed(used)))
    return ": ".join(text for text in texts if not any(_contains(other, text) for other in texts))


def _contains(text: str, part: str) -> bool:
    return text != part and re.search(rf"(?<!\w){re.escape(part)}(?!\w)", text) is not None


def _label(link: Tag) -> str:
    """The link's title or aria-label, else its images' alt text, when it says more than "PDF"
    (the images are looked for only when needed)."""
    candidates = chain((link.get("title", ""), link.get("aria-label", "")),
                       (image.get("alt", "") for image in _tags(link) if image.name == "img"))
    return next((text for text in map(_normalize, candidates) if not _is_generic(text)), "")


@dataclass
class _SplitLine:
    """A container's text pieces cut at its links: gaps[i] lies before its link i, gaps[-1] after
    the last; own[id(link)] is a link's own text."""

    positions: dict[int, int]
    gaps: list[list[str]]
    own: dict[int, list[str]]


class _PageTexts:
    """The texts of one page's elements, each read once however many links it describes (by
    id: the tree outlives this object): headings, captions, and each link's line (table row,
    list item, paragraph...), so a page with thousands of links in one <div> stays linear."""

    def __init__(self) -> None:
        self._texts: dict[int, str] = {}
        self._captions: dict[int, Tag | None] = {}
        self._by_container: dict[int, _SplitLine] = {}

    def text(self, element: Tag) -> str:
        if id(element) not in self._texts:
            self._texts[id(element)] = _text(element)
        return self._texts[id(element)]

    def caption(self, table: Tag) -> Tag | None:
        if id(table) not in self._captions:
            self._captions[id(table)] = next((tag for tag in _tags(table) if tag.name == "caption"), None)
        return self._captions[id(table)]

    def text_around(self, link: Tag, enclosing: dict[str, Tag], include_own: bool) -> str:
        """The link's table row without the other links' text; in a list item, paragraph... the
        text between it and its neighbour link on the side labels are written: before the links
        when the line starts with text, else after them."""
        container = next((tag for name, tag in enclosing.items() if name in _CONTAINERS), link.parent)
        if container is None or container.name in ("body", "html", "[document]"):
            return ""
        if id(container) not in self._by_container:
            self._by_container[id(container)] = _split(container)
        line = self._by_container[id(container)]
        position, gaps = line.positions[id(link)], line.gaps
        own = line.own[id(link)] if include_own else []
        if container.name == "tr":
            pieces = [piece for gap in gaps[:position + 1] for piece in gap] + own + [
                piece for gap in gaps[position + 1:] for piece in gap
            ]
        elif _normalize(" ".join(gaps[0])):
            pieces = gaps[position] + own
        else:
            pieces = own + gaps[position + 1]
        return _normalize(" ".join(pieces)).strip(_SEPARATOR_CHARACTERS)


def _split(container: Tag) -> _SplitLine:
    """One pass over the container; a text inside a heading nested in it is left out (it is
    read as a heading)."""
    line = _SplitLine({}, [[]], {})
    for node in container.descendants:
        if isinstance(node, Tag):
            if node.name == "a":
                line.positions[id(node)] = len(line.gaps) - 1
                line.own[id(node)] = []
                line.gaps.append([])
            continue
        if type(node) is not NavigableString:
            continue
        owner, in_heading = _link_and_heading_within(node, container)
        if in_heading:
            continue
        if owner is not None:
            line.own[id(owner)].append(node)
        else:
            line.gaps[-1].append(node)
    return line


def _link_and_heading_within(node: NavigableString, container: Tag) -> tuple[Tag | None, bool]:
    """The nearest link enclosing node inside container, and whether a heading inside container
    encloses it: a walk up to the container only, not to the top of the page."""
    owner = None
    parent = node.parent
    while parent is not container:
        if parent.name in _HEADINGS:
            return owner, True
        if owner is None and parent.name == "a":
            owner = parent
        parent = parent.parent
    return owner, False


def _definition_term(definition: Tag | None, texts: _PageTexts) -> list[str]:
    term = definition.find_previous_sibling("dt") if definition else None
    return [texts.text(term)] if term else []


def _caption(link: Tag, table: Tag | None, texts: _PageTexts) -> list[str]:
    caption = texts.caption(table) if table else None
    return [texts.text(caption)] if caption and not _is_inside(link, caption) else []


def _enclosing(link: Tag) -> dict[str, Tag]:
    """The nearest enclosing element of each name, nearest first: one walk up the page serves
    the line, <dd> and <table> lookups (bs4's find_parent is much slower)."""
    enclosing: dict[str, Tag] = {}
    for parent in link.parents:
        enclosing.setdefault(parent.name, parent)
    return enclosing


def _tags(element: Tag) -> Iterator[Tag]:
    """The elements inside element in document order (bs4's find/find_all are much slower)."""
    return (node for node in element.descendants if isinstance(node, Tag))


def _is_inside(element: Tag, ancestor: Tag) -> bool:
    return any(parent is ancestor for parent in element.parents)


def _text(element: Tag) -> str:
    return _normalize(" ".join(node for node in element.descendants if type(node) is NavigableString))


def _normalize(text: str) -> str:
    """One space between words, none inside brackets or before punctuation (text is joined from
    the page's pieces with spaces)."""
    return _SPACE_INSIDE_PUNCTUATION.sub("", " ".join(text.split()))


def _is_generic(text: str) -> bool:
    """True for link texts that say nothing about the document: "Download", "PDF (2 MB)", ""."""
    words = _WORD.findall(_FILE_SIZE.sub(" ", text.lower()))
    return all(word in _GENERIC_WORDS for word in words)


def read_page(source: str, base_url: str | None) -> tuple[str | bytes, str]:
    """A listing page from a saved file or an http(s) URL, and the URL its links are relative to:
    base_url if given, else the URL after redirects, else the file's file:// URI."""
    if urlsplit(source).scheme in ("http", "https"):
        try:
            response = requests.get(source, timeout=PAGE_TIMEOUT_SECONDS, headers={"User-Agent": USER_AGENT})
            response.raise_for_status()
        except requests.RequestException as exc:
            raise PageUnreadable(
                f"cannot fetch {source}: {_reason(exc)}; check the URL, or save the page and pass the file"
            ) from None
        return response.content, base_url or response.url
    path = Path(source)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise PageUnreadable(
            f"cannot read {source}: {exc.strerror or exc}; pass a saved HTML file or an http(s) URL"
        ) from None
    return content, base_url or path.resolve().as_uri()


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {PAGE_TIMEOUT_SECONDS} s"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    return type(exc).__name__
