"""The operators' email: what it says, and that its command is one the CLI accepts."""

import shlex

import pytest

from refresh_assets.cli import main
from refresh_assets.lib.sources.notifications import DocumentNotice, compose_notice, enter_command

ACFR = DocumentNotice(7, "Vallejo", "acfr", 2023, "https://example.org/acfr 2023.pdf",
                      "Annual Comprehensive Financial Report FY 2022-23")
VALUATION = DocumentNotice(8, "Vallejo", "calpers_valuation", 2022,
                           "https://www.calpers.ca.gov/docs/vallejo-safety-police-2022.pdf",
                           "Safety Police Plan Actuarial Valuation as of June 30, 2022", "Safety Police")


@pytest.mark.parametrize(("notice", "expected"), [
    (ACFR, {"entry_type": "acfr", "city": "Vallejo", "fiscal_year": 2023,
            "document_url": "https://example.org/acfr 2023.pdf",
            "document_title": "Annual Comprehensive Financial Report FY 2022-23"}),
    (VALUATION, {"entry_type": "calpers_valuation", "city": "Vallejo", "plan": "Safety Police",
                 "valuation_date": "2022-06-30",
                 "document_url": "https://www.calpers.ca.gov/docs/vallejo-safety-police-2022.pdf"}),
])
def test_the_enter_command_parses_with_the_real_cli_options(notice, expected):
    args = shlex.split(enter_command(notice))
    assert args[:2] == ["refresh-assets", "enter"]
    params = main.commands["enter"].make_context("enter", args[2:]).params
    assert {name: params[name] for name in expected} == expected


def test_an_acfr_notice_gives_year_time_and_command():
    subject, html, text = compose_notice(ACFR)
    assert subject == "New ACFR to enter: Vallejo, fiscal year 2023"
    assert "FY2022-23 (ends 2023)" in html and "60–120 minutes" in html
    assert "refresh-assets ack 7" in text
    assert "--document-title &#39;Annual Comprehensive Financial Report FY 2022-23&#39;" in html


def test_a_valuation_notice_names_its_plan_and_date():
    subject, html, text = compose_notice(VALUATION)
    assert subject == ("New CalPERS valuation to enter: Vallejo (Safety Police), as of June 30, 2022")
    assert "10–15 minutes" in html and "June 30, 2022" in html
    assert "--plan 'Safety Police' --valuation-date 2022-06-30" in text
