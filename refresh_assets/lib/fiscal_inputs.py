"""The fiscal-inputs data dictionary, and the bulk import of the published data set.

The field names are the project's canonical names (see data/README.md). Values are
kept as the source wrote them (validated as numbers, stored as `numeric`) so that
the scores can round exactly as the State Auditor did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Field:
    name: str
    sql_type: str
    meaning: str
    required: bool = False


# Order matters: it is the column order of the published CSV.
FIELDS: tuple[Field, ...] = (
    Field("city", "text", "city name", required=True),
    Field("county", "text", "county, without the word County"),
    Field("fiscal_year", "integer", "year the fiscal year ends (FY2017-18 -> 2018)", required=True),
    Field("population", "integer", "residents"),
    Field("gf_revenues", "numeric", "general fund revenues, USD"),
    Field("gf_revenues_prior_year", "numeric", "general fund revenues of the prior year, USD"),
    Field("gf_revenues_two_years_prior", "numeric", "general fund revenues two years prior, USD"),
    Field("gf_unrestricted_fund_balance", "numeric",
          "general fund committed + assigned + unassigned fund balance, USD"),
    Field("gf_unrestricted_fund_balance_prior_year", "numeric",
          "unrestricted fund balance of the prior year, USD"),
    Field("gf_unrestricted_fund_balance_two_years_prior", "numeric",
          "unrestricted fund balance two years prior, USD"),
    Field("gf_expenditures_and_transfers_out", "numeric",
          "general fund expenditures plus transfers out, USD"),
    Field("gf_cash_and_investments", "numeric", "general fund cash and investments, USD"),
    Field("gf_liabilities", "numeric", "general fund liabilities, USD"),
    Field("long_term_obligations_excl_retirement", "numeric",
          "long-term obligations other than pension and OPEB, USD"),
    Field("government_wide_revenues", "numeric", "total government-wide revenues, USD"),
    Field("net_pension_liability", "numeric", "net pension liability (negative = net asset), USD"),
    Field("pension_related_debt", "numeric", "pension obligation bonds and similar debt, USD"),
    Field("pension_plan_assets", "numeric", "pension plan fiduciary net position, USD"),
    Field("total_pension_liability", "numeric", "total pension liability, USD"),
    Field("pension_contribution_required", "numeric",
          "actuarially determined employer contribution this year, USD"),
    Field("pension_contribution_projected", "numeric",
          "CalPERS projected required contribution for a future year, USD"),
    Field("net_opeb_liability", "numeric", "net other-post-employment-benefits liability, USD"),
    Field("opeb_funded_ratio", "numeric", "OPEB plan assets / total OPEB liability (ratio)"),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)



class FiscalInputsError(ValueError):
    """A fiscal-inputs file that cannot be loaded; the message names file, row and field."""


def read_fiscal_inputs_csv(path: Path) -> pd.DataFrame:
    """Reads and checks a CSV with the published columns; values stay text, checked as numbers.

    Raises:
        FiscalInputsError: the file is missing or unreadable, a column is missing or unknown,
            or a value is not of its field's type (the first such cells are named).
    """
    if not path.is_file():
        raise FiscalInputsError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise FiscalInputsError(f"{path}: not a readable CSV file: {exc}") from None
    except pd.errors.EmptyDataError:
        raise FiscalInputsError(f"{path}: the file is empty") from None
    missing = [name for name in FIELD_NAMES if name not in frame.columns]
    unknown = [name for name in frame.columns if name not in FIELD_NAMES]
    if missing or unknown:
        raise FiscalInputsError(
            f"{path}: header does not match the data dictionary"
            + (f"; missing columns: {', '.join(missing)}" if missing else "")
            + (f"; unknown columns: {', '.join(unknown)}" if unknown else "")
        )
    frame = frame[list(FIELD_NAMES)].apply(lambda column: column.str.strip())
    problems: list[str] = []
    for field in FIELDS:
        values = frame[field.name]
        present = values.notna()
        if field.required:
            problems += _describe(path, frame.index[~present], field.name, "is required", values)
        if field.sql_type in ("integer", "numeric"):
            numbers = pd.to_numeric(values, errors="coerce")
            bad = present & numbers.isna()
            if field.sql_type == "integer":
                bad |= present & numbers.notna() & (numbers % 1 != 0)
                if not bad.any():
                    frame[field.name] = numbers.astype("Int64")  # "2018.0" -> 2018
            rule = "must be a whole number" if field.sql_type == "integer" else "must be a number"
            problems += _describe(path, frame.index[bad], field.name, rule, values)
    if problems:
        shown = problems[:20]
        more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise FiscalInputsError("\n".join(shown) + more)
    return frame


def _describe(path: Path, rows: pd.Index, field: str, rule: str, values: pd.Series) -> list[str]:
    # Line numbers as an editor shows them: the header is line 1.
    def shown(value) -> str:
        return "empty" if pd.isna(value) else f"value {value!r}"

    return [f"{path}: line {row + 2}, field {field}: {rule} ({shown(values[row])})" for row in rows]


BULK_DOCUMENT_TITLE = (
    "California State Auditor, Local High-Risk dashboard inputs (cities' audited financial "
    "reports; pension figures from CalPERS)"
)


def bulk_rows_as_versions(frame: pd.DataFrame, source_name: str) -> pd.DataFrame:
    """Published rows as entry versions: one source per city-year (the store checksums their
    content, so a re-import of unchanged rows adds nothing)."""
    return frame.assign(
        source_kind="bulk_import",
        source_path=source_name + "#" + frame["city"] + "/" + frame["fiscal_year"].astype(str),
        document_title=BULK_DOCUMENT_TITLE,
        entered_by="bulk import",
    )
