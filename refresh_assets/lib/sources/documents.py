"""What a listing page yields: one document per URL, with its type and fiscal year."""

from __future__ import annotations

from dataclasses import asdict, dataclass

ACFR = "acfr"
CALPERS_VALUATION = "calpers_valuation"
DOC_TYPES = (ACFR, CALPERS_VALUATION)
# What an operator is told to expect when a document of this type arrives.
ENTRY_MINUTES = {ACFR: (60, 120), CALPERS_VALUATION: (10, 15)}


@dataclass(frozen=True)
class DiscoveredDocument:
    """A document found on a listing page.

    `fiscal_year` is the year the fiscal year ends (FY 2022-23 -> 2023); for a CalPERS
    valuation, the year of its valuation date (as of June 30, 2022 -> 2022).
    """

    doc_type: str
    fiscal_year: int
    url: str
    title: str

    def as_dict(self) -> dict:
        return asdict(self)
