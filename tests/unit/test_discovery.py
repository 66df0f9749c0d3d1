"""Finding ACFRs and CalPERS valuations on listing pages: the year and type rules, and every
document of each hand-written fixture page (tests/fixtures/pages/README.md)."""

from pathlib import Path

import pytest

from refresh_assets.lib.sources.discovery import (
    PageUnreadable,
    document_type,
    find_documents,
    fiscal_year_of,
    read_page,
)
from refresh_assets.lib.sources.documents import ACFR, CALPERS_VALUATION, DiscoveredDocument

PAGES = Path(__file__).parents[1] / "fixtures" / "pages"
VALLEJO = "https://www.cityofvallejo.net"
VALLEJO_FILE = f"{VALLEJO}/common/pages/DisplayFile.aspx?itemId="
FAIRVIEW = "https://www.fairview.ca.gov"
MARINA_VISTA = "https://www.marinavista.ca.gov/DocumentCenter/View"
NAPA_SPRINGS = "https://www.napasprings.ca.gov/finance/reports"
CALPERS_REPORTS = "https://www.calpers.ca.gov/docs/actuarial-reports"


def page(name: str) -> bytes:
    return (PAGES / name).read_bytes()


def acfr(year: int, url: str, title: str) -> DiscoveredDocument:
    return DiscoveredDocument(ACFR, year, url, title)


def valuation(year: int, url: str, title: str) -> DiscoveredDocument:
    return DiscoveredDocument(CALPERS_VALUATION, year, url, title)


@pytest.mark.parametrize(("text", "year"), [
    ("FY 2022-23", 2023),
    ("2020/21", 2021),
    ("FY 17-18", 2018),
    ("Fiscal Year Ended June 30, 2022", 2022),
    ("CAFR 2015", 2015),
    ("2021\u20132022", 2022),
    ("2021\u20142022", 2022),
    ("2021 \u2013 2022", 2022),
    ("FY2019-2020", 2020),
    ("for the year ended June 30, 2019", 2019),
    ("FY 1999-00", 2000),
    ("FY22 ACFR", 2022),
    ("ACFR_FY2022.pdf", 2022),
    ("Fiscal Year 2016-17", 2016 + 1),
    ("ACFR for the years ended 6/30/2021", 2021),
    # Several years: the first expression is the report's; a list of years is one expression.
    ("ACFR FY 2021-22 (restated FY 2020-21 figures)", 2022),
    ("CAFRs 2015, 2016 and 2017", 2017),
    ("CAFR 2015 & 2016", 2016),
    ("Fiscal Years Ended June 30, 2022 and 2021", 2022),
    ("ACFR FY 2022-23 (issued March 2024)", 2023),
    # Not fiscal years.
    ("2019-21", None),
    ("Archive (2010-2016)", None),
    ("17-18", None),
    ("Most recent ACFR", None),
    ("Resolution 2345", None),
    ("CAFR 1989", None),
    ("CAFR 2101", None),
    ("CalPERS ID 6235012345", None),
])
def test_fiscal_year_of_an_acfr(text, year):
    assert fiscal_year_of(text, ACFR) == year


@pytest.mark.parametrize(("text", "year"), [
    ("Miscellaneous Plan Actuarial Valuation as of June 30, 2022", 2022),
    ("June 30, 2022 Actuarial Valuation", 2022),
    # The valuation date, not the fiscal year whose rates it sets.
    ("June 30, 2019 Actuarial Valuation - Miscellaneous Plan (rates for FY 2021-22)", 2019),
    ("Contribution rates for FY 2023-24 from the valuation as of June 30, 2021", 2021),
    ("PEPRA Safety Plan Annual Valuation Report 2018", 2018),
])
def test_fiscal_year_of_a_calpers_valuation_is_its_valuation_date(text, year):
    assert fiscal_year_of(text, CALPERS_VALUATION) == year


def test_the_same_text_reads_differently_for_an_acfr():
    assert fiscal_year_of("Rates for FY 2023-24, valuation as of June 30, 2021", ACFR) == 2024


def test_fiscal_year_of_an_unknown_type_is_an_error():
    with pytest.raises(ValueError, match="pafr"):
        fiscal_year_of("FY 2022-23", "pafr")


@pytest.mark.parametrize(("title", "doc_type"), [
    ("Annual Comprehensive Financial Report FY 2022-23", ACFR),
    ("Comprehensive Annual Financial Report", ACFR),
    ("comprehensive annual financial reports", ACFR),
    ("ACFR 2023", ACFR),
    ("CAFRs 2015, 2016 and 2017", ACFR),
    ("ACFR_FY2022.pdf", ACFR),
    ("Annual Financial Report (Comprehensive) 2022", ACFR),
    ("Miscellaneous Plan Actuarial Valuation as of June 30, 2022", CALPERS_VALUATION),
    ("CalPERS Annual Valuation Report 2021", CALPERS_VALUATION),
    ("PEPRA Safety Plan Annual Valuation Report", CALPERS_VALUATION),
    # Excluded, even when they name an ACFR or a valuation.
    ("Popular Annual Financial Report FY 2022-23", None),
    ("PAFR 2023", None),
    ("Adopted Budget FY 2023-24", None),
    ("Mid-Year Budget Report", None),
    ("Midyear report on the ACFR", None),
    ("Single Audit Report FY 2021-22", None),
    ("GANN Limit Calculation FY 2023-24", None),
    ("Quarterly Investment Report", None),
    ("ACFR Letter of Transmittal", None),
    ("OPEB Actuarial Valuation as of June 30, 2021", None),
    ("Retiree Health Plan Actuarial Valuation", None),
    ("GASB 68 Accounting Valuation Report, Miscellaneous Plan", None),
    # Neither.
    ("Annual Financial Report FY 2021-22", None),
    ("Actuarial Valuation", None),
    ("Measure P Annual Report", None),
    ("Acfrance travel guide", None),
])
def test_document_type(title, doc_type):
    assert document_type(title) == doc_type


def test_a_finance_page_with_bare_years_under_the_acfr_heading():
    documents = find_documents(page("city_finance_lists.html"),
                               f"{VALLEJO}/city_hall/departments___divisions/finance")
    heading = "Annual Comprehensive Financial Reports (ACFR)"
    assert documents == [
        acfr(2023, f"{VALLEJO_FILE}21004", f"{heading}: FY 2022\u201323"),
        acfr(2022, f"{VALLEJO_FILE}19876", f"{heading}: FY 2021-22 (issued March 2023)"),
        acfr(2021, f"{VALLEJO_FILE}17112", f"{heading}: FY 2020-21"),
        acfr(2020, f"{VALLEJO_FILE}15550", "CAFR FY 2019-20"),
        # Also linked with #page=4 as the letter of transmittal, which is left out.
        acfr(2019, f"{VALLEJO_FILE}13310", "CAFR FY 2018-19"),
        acfr(2018, f"{VALLEJO_FILE}11021", f"{heading}: FY 17-18"),
    ]


def test_a_table_with_a_download_link_per_row_and_a_relative_base():
    documents = find_documents(page("table_downloads.html"), f"{FAIRVIEW}/finance/financial-reports")
    reports = f"{FAIRVIEW}/finance/reports/docs"
    assert documents == [
        # Linked from an icon and a "Download" in its row, and from a paragraph below.
        acfr(2023, f"{reports}/acfr-2023.pdf", "2022\u20142023 Annual Comprehensive Financial Report"),
        acfr(2022, f"{reports}/acfr-2022.pdf",
             "2021\u20142022 Annual Comprehensive Financial Report (PDF, 8.2 MB)"),
        acfr(2021, f"{FAIRVIEW}/Document/123", "2020-21 Comprehensive Annual Financial Report"),
        acfr(2020, f"{FAIRVIEW}/Document/98?download=1", "2019/20 Comprehensive Annual Financial Report"),
        acfr(2018, f"{FAIRVIEW}/docs/cafr_2018.pdf", "CAFR 2017-18 (PDF)"),
    ]


def test_icon_links_prose_and_definition_lists():
    documents = find_documents(page("icons_and_prose.html"), "https://www.marinavista.ca.gov/finance")
    assert documents == [
        # Also listed as "Fiscal Year 2022-23" under a <dt>; the card's heading says more.
        acfr(2023, f"{MARINA_VISTA}/5120/ACFR-2023-PDF",
             "Annual Comprehensive Financial Report for the Fiscal Year Ended June 30, 2023"),
        acfr(2022, f"{MARINA_VISTA}/4388/ACFR-2022",
             "The City's Annual Comprehensive Financial Report for the year ended June 30, 2022 is "
             "available"),
        acfr(2021, f"{MARINA_VISTA}/4502/ACFR-2021",
             "Annual Comprehensive Financial Report FY 2020-21 (PDF)"),
        acfr(2020, f"{MARINA_VISTA}/3001/CAFR-2020", "Earlier reports: CAFR 2020"),
        acfr(2019, f"{MARINA_VISTA}/2750/CAFR-2019", "CAFR 2019"),
        acfr(2019, f"{MARINA_VISTA}/4503", "CAFR fiscal year 2018-19"),
        acfr(2017, f"{MARINA_VISTA}/1990/ACFR-2017",
             "Annual Comprehensive Financial Report: Fiscal Year 2016-17"),
    ]


def test_a_calpers_plan_listing_with_an_absolute_base():
    documents = find_documents(page("calpers_valuations.html"), "file:///saved/calpers.html")
    vallejo = "Public Agency Actuarial Valuation Reports: City of Vallejo"
    assert documents == [
        valuation(2022, f"{CALPERS_REPORTS}/2022/vallejo-city-miscellaneous-1181-2022.pdf",
                  f"{vallejo}: Miscellaneous Plan (CalPERS ID 6235012345) June 30, 2022"),
        valuation(2022, f"{CALPERS_REPORTS}/2022/vallejo-city-safety-police-2022.pdf",
                  f"{vallejo}: Safety Police Plan June 30, 2022"),
        valuation(2021, f"{CALPERS_REPORTS}/2021/vallejo-city-miscellaneous-2021.pdf",
                  f"{vallejo}: Miscellaneous Plan June 30, 2021"),
        valuation(2020, f"{CALPERS_REPORTS}/2020/vallejo-city-safety-fire-2020.pdf",
                  "Safety Fire Plan Actuarial Valuation as of June 30, 2020"),
        # Also linked as "Miscellaneous 2019", whose type comes from the page heading.
        valuation(2019, f"{CALPERS_REPORTS}/2019/vallejo-city-miscellaneous-2019.pdf",
                  "June 30, 2019 Actuarial Valuation \u2013 Miscellaneous Plan (rates for FY 2021-22)"),
        valuation(2018, f"{CALPERS_REPORTS}/vallejo-pepra-miscellaneous-annual-valuation-report-2018.pdf",
                  "PEPRA Miscellaneous Plan Annual Valuation Report 2018"),
    ]


SEVERAL_YEARS = [
    acfr(2023, f"{NAPA_SPRINGS}/ACFR_FY2023.pdf", "ACFR FY 2022-23"),
    acfr(2022, f"{NAPA_SPRINGS}/ACFR_FY2022.pdf", "ACFR FY 2021-22 (restated FY 2020-21 figures)"),
    acfr(2020, f"{NAPA_SPRINGS}/CAFR%202020.pdf", "Comprehensive Annual Financial Report 2019\u20142020"),
    acfr(2017, f"{NAPA_SPRINGS}/CAFR_2015-2017.pdf", "CAFRs 2015, 2016 and 2017 (one combined file)"),
    acfr(2014, f"{NAPA_SPRINGS}/CAFR2014.pdf", "CAFR 2014"),
    valuation(2022, f"{CALPERS_REPORTS}/2022/napa-springs-city-miscellaneous-2022.pdf",
              "CalPERS Actuarial Valuation \u2013 Miscellaneous Plan, as of June 30, 2022"),
    valuation(2022, f"{CALPERS_REPORTS}/2022/napa-springs-city-safety-2022.pdf",
              "CalPERS Actuarial Valuation \u2013 Safety Plan, as of June 30, 2022"),
]


def test_several_years_ranges_and_a_report_linked_twice():
    documents = find_documents(page("several_years.html"), "https://www.napasprings.ca.gov/finance/transparency")
    assert documents == SEVERAL_YEARS


@pytest.mark.parametrize("doc_type", [ACFR, CALPERS_VALUATION])
def test_only_the_types_asked_for(doc_type):
    documents = find_documents(page("several_years.html"), "https://www.napasprings.ca.gov/finance/transparency",
                               doc_types=[doc_type])
    assert documents == [document for document in SEVERAL_YEARS if document.doc_type == doc_type]


def test_an_unknown_type_is_an_error():
    with pytest.raises(ValueError, match="pafr"):
        find_documents("<a href='x.pdf'>PAFR 2023</a>", "https://city.gov/", doc_types=["pafr"])


def test_a_generic_link_takes_its_title_from_its_list_item_after_it():
    html = """<ul><li><a href="a.pdf">Download</a> FY 2022-23 ACFR</li>
                  <li><a href="b.pdf"><i class="fa fa-file-pdf"></i></a> Popular Annual Financial Report 2023
                  </li>
              </ul>"""
    assert find_documents(html, "https://city.gov/finance/") == [
        acfr(2023, "https://city.gov/finance/a.pdf", "FY 2022-23 ACFR"),
    ]


def test_a_type_in_an_outer_heading_serves_links_under_a_year_subheading():
    html = """<h2>Comprehensive Annual Financial Reports</h2><h3>2016</h3>
              <p><a href="/cafr16.pdf">Full report</a></p>
              <h2>Other</h2><p><a href="/other16.pdf">Full report 2016</a></p>"""
    assert find_documents(html, "https://city.gov/") == [
        acfr(2016, "https://city.gov/cafr16.pdf",
                           "Comprehensive Annual Financial Reports: 2016: Full report"),
    ]


def test_links_that_are_not_documents_are_skipped():
    html = """<h1>ACFR FY 2022-23</h1>
              <a href="mailto:finance@city.gov">ACFR FY 2022-23</a>
              <a href="javascript:void(0)">ACFR FY 2022-23</a>
              <a href="#acfr">ACFR FY 2022-23</a>
              <a href="">ACFR FY 2022-23</a>
              <a>ACFR FY 2022-23</a>"""
    assert find_documents(html, "https://city.gov/") == []


def test_read_page_from_a_file_uses_its_uri_unless_given_a_base(tmp_path):
    saved = tmp_path / "finance.html"
    saved.write_text("<a href='acfr.pdf'>ACFR 2023</a>")
    assert read_page(str(saved), None) == (saved.read_bytes(), saved.as_uri())
    assert read_page(str(saved), "https://city.gov/finance/") == (saved.read_bytes(), "https://city.gov/finance/")


def test_read_page_names_a_missing_file(tmp_path):
    with pytest.raises(PageUnreadable, match=r"cannot read .*missing\.html: No such file"):
        read_page(str(tmp_path / "missing.html"), None)
