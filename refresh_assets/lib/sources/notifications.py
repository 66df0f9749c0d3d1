"""The email that tells operators a new document is out, and exactly how to enter it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from refresh_assets.lib.change_report import TEMPLATES
from refresh_assets.lib.sources.documents import ACFR, ENTRY_MINUTES

DOCUMENT_NAMES = {ACFR: "annual comprehensive financial report",
                  "calpers_valuation": "CalPERS actuarial valuation"}


@dataclass(frozen=True)
class DocumentNotice:
    notification_id: int
    city: str
    doc_type: str
    fiscal_year: int
    url: str
    title: str
    plan: str | None = None  # a CalPERS valuation's plan, from the source registry


def enter_command(notice: DocumentNotice) -> str:
    """The `refresh-assets enter` command line that starts this document's entry."""
    if notice.doc_type == ACFR:
        args = ["refresh-assets", "enter", "--city", notice.city, "--fiscal-year",
                str(notice.fiscal_year), "--document", notice.url, "--document-title", notice.title]
    else:
        args = ["refresh-assets", "enter", "--type", "calpers_valuation", "--city", notice.city,
                *(["--plan", notice.plan] if notice.plan else []),
                "--valuation-date", f"{notice.fiscal_year}-06-30", "--document", notice.url,
                "--document-title", notice.title]
    return shlex.join(args)


def compose_notice(notice: DocumentNotice) -> tuple[str, str, str]:
    """Subject, HTML and text of the operators' email about one new document."""
    minutes = ENTRY_MINUTES[notice.doc_type]
    if notice.doc_type == ACFR:
        year_label = "Fiscal year"
        year_text = f"FY{notice.fiscal_year - 1}-{str(notice.fiscal_year)[2:]} (ends {notice.fiscal_year})"
        subject = f"New ACFR to enter: {notice.city}, fiscal year {notice.fiscal_year}"
    else:
        year_label = "Valuation date"
        year_text = f"June 30, {notice.fiscal_year}"
        plan = f" ({notice.plan})" if notice.plan else ""
        subject = f"New CalPERS valuation to enter: {notice.city}{plan}, as of June 30, {notice.fiscal_year}"
    command = enter_command(notice)
    html = TEMPLATES.get_template("document_notification.html.j2").render(
        subject=subject, city=notice.city, url=notice.url, title=notice.title,
        year_label=year_label, year_text=year_text, minutes=minutes,
        notification_id=notice.notification_id, command=command)
    text = (f"{subject}\n\nDocument: {notice.title}\n{notice.url}\n{year_label}: {year_text}\n"
            f"Estimated entry time: {minutes[0]}-{minutes[1]} minutes "
            f"({DOCUMENT_NAMES[notice.doc_type]})\n\nEnter it with:\n  {command}\n\n"
            f"Acknowledge: refresh-assets ack {notice.notification_id}\n")
    return subject, html, text
