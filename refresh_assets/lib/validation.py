"""Rules about fiscal figures, as an auditor would check them, vectorised over all versions.

Input: entry versions as rows (data-dictionary fields plus `entry_version`,
`source_kind`, `source_path`). Output: one row per issue with the rule, its severity
(`error` blocks, `warning` is shown, `info` records a fact such as a restatement), the
value and a message. A rule that real audited data can legitimately break is a warning:
the shipped data set validates with zero errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from refresh_assets.lib.fiscal_inputs import FIELDS

ERROR, WARNING, INFO = "error", "warning", "info"
ISSUE_COLUMNS = ["city", "fiscal_year", "entry_version", "source_path", "field", "rule",
                 "severity", "value", "message"]
KEY = ["city", "fiscal_year"]

AMOUNT_FIELDS = tuple(f.name for f in FIELDS if f.sql_type == "numeric"
                      and f.name != "opeb_funded_ratio")
# Cannot be negative in audited statements. Fund balance, net pension liability (a net
# asset) and net OPEB liability legitimately can; GF cash has its own warning.
NON_NEGATIVE = (
    "gf_revenues", "gf_revenues_prior_year", "gf_revenues_two_years_prior",
    "gf_expenditures_and_transfers_out", "gf_liabilities", "long_term_obligations_excl_retirement",
    "government_wide_revenues", "pension_related_debt", "pension_plan_assets",
    "total_pension_liability", "pension_contribution_required", "pension_contribution_projected",
)
# What an operator must transcribe for the scores to mean anything.
REQUIRED_FOR_ENTRIES = (
    "population", "gf_revenues", "gf_expenditures_and_transfers_out",
    "gf_unrestricted_fund_balance", "government_wide_revenues",
)
# (this year's column, column in the same entry for the year before, ... two years before)
PRIOR_YEAR_COLUMNS = {
    "gf_revenues": ("gf_revenues_prior_year", "gf_revenues_two_years_prior"),
    "gf_unrestricted_fund_balance": ("gf_unrestricted_fund_balance_prior_year",
                                     "gf_unrestricted_fund_balance_two_years_prior"),
}
YEAR_OVER_YEAR_FIELDS = ("gf_revenues", "gf_expenditures_and_transfers_out",
                         "government_wide_revenues")


@dataclass(frozen=True)
class ValidationPolicy:
    """Thresholds of the rules; the defaults are documented in README.md."""

    today: date = field(default_factory=date.today)
    year_over_year_jump: float = 0.5  # warn beyond +/-50% from the year before
    per_capita_gf_revenue: tuple[float, float] = (100.0, 20_000.0)  # USD per resident
    large_amount: float = 50e9  # warn: larger than any city's budget, but LA's pension
    # liability is $57.6B
    implausible_amount: float = 500e9  # error: beyond the whole State's budget
    implausible_population: int = 40_000_000  # error: more than the whole State's residents
    funded_ratio_high: float = 1.5


def numeric_view(versions: pd.DataFrame) -> pd.DataFrame:
    """Figures as floats for the rules (the stored values stay exact); a figure absent from
    the frame counts as not reported."""
    missing = [f.name for f in FIELDS if f.name not in versions.columns]
    numbers = versions.assign(**dict.fromkeys(missing, np.nan))
    for name in (*AMOUNT_FIELDS, "opeb_funded_ratio", "population", "fiscal_year"):
        numbers[name] = _as_floats(numbers[name])
    return numbers


def _as_floats(values: pd.Series) -> pd.Series:
    """Numbers as floats, anything else as NaN; a whole number beyond a float's range (an
    operator's `10**400`: Python ints are unbounded) as +/-inf, which the bounds then flag."""
    try:
        return pd.to_numeric(values, errors="coerce").astype(float)
    except OverflowError:
        return pd.to_numeric(values.map(_within_float_range), errors="coerce").astype(float)


def _within_float_range(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


def _issues(rows: pd.DataFrame, field_name: str, rule: str, severity: str,
            message: str | pd.Series, value: pd.Series | None = None) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=ISSUE_COLUMNS)
    shown = rows[field_name] if value is None else value
    return pd.DataFrame({
        "city": rows["city"], "fiscal_year": rows["fiscal_year"].astype(int),
        "entry_version": rows["entry_version"], "source_path": rows["source_path"],
        "field": field_name, "rule": rule, "severity": severity,
        "value": shown.map(_format_value), "message": message,
    })


def _format_value(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return f"{'-' if value < 0 else ''}beyond 1.8e308 (a float's range)"
    if isinstance(value, float) and value.is_integer():
        return f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, (int, float)) else str(value)


# Which version of a city-year counts: an operator's entry outranks the bulk import (an
# operator transcribes a newer or corrected document); within one kind of source the later
# ingest wins. entry_version is unique and grows with each ingest, so no tie remains.
SOURCE_PRECEDENCE = {"bulk_import": 0, "entry_file": 1}


def current_versions(versions: pd.DataFrame) -> pd.DataFrame:
    """The version that counts for each city-year, by SOURCE_PRECEDENCE, then ingest order."""
    rank = versions["source_kind"].map(SOURCE_PRECEDENCE)
    if rank.isna().any():
        unknown = sorted(set(versions.loc[rank.isna(), "source_kind"]))
        raise ValueError(f"source_kind {unknown} has no precedence; known: {list(SOURCE_PRECEDENCE)}")
    ordered = versions.assign(_rank=rank).sort_values(["_rank", "entry_version"])
    return ordered.drop_duplicates(KEY, keep="last").drop(columns="_rank")


def validate_versions(versions: pd.DataFrame, policy: ValidationPolicy | None = None
                      ) -> pd.DataFrame:
    """Every issue of every version given; empty when all is well."""
    policy = policy or ValidationPolicy()
    if versions.empty:
        return pd.DataFrame(columns=ISSUE_COLUMNS)
    v = numeric_view(versions)
    found: list[pd.DataFrame] = []

    entries = v[v["source_kind"] == "entry_file"]
    for name in REQUIRED_FOR_ENTRIES:
        found.append(_issues(entries[entries[name].isna()], name, "required", ERROR,
                             "an operator entry must report this figure"))
    for name in NON_NEGATIVE:
        found.append(_issues(v[v[name] < 0], name, "non_negative", ERROR,
                             "cannot be negative in audited statements"))
    found.append(_issues(v[v["population"] <= 0], "population", "positive_population", ERROR,
                         "a city has at least one resident"))
    found.append(_issues(v[v["population"] > policy.implausible_population], "population",
                         "implausible_amount", ERROR,
                         f"over {policy.implausible_population:,} residents, more than the "
                         "whole State's: a transcription error?"))
    found.append(_issues(v[v["gf_cash_and_investments"] < 0], "gf_cash_and_investments",
                         "overdrawn_cash", WARNING,
                         "negative general fund cash (overdrawn share of pooled cash)"))

    amounts = v[list(AMOUNT_FIELDS)].abs()
    for name in AMOUNT_FIELDS:
        implausible = amounts[name] > policy.implausible_amount
        large = (amounts[name] > policy.large_amount) & ~implausible
        found.append(_issues(v[implausible], name, "implausible_amount", ERROR,
                             f"over ${policy.implausible_amount / 1e9:,.0f}B: a transcription error?"))
        found.append(_issues(v[large], name, "large_amount", WARNING,
                             f"over ${policy.large_amount / 1e9:,.0f}B: check the magnitude"))

    # Per resident only where the population is plausible: its own error says the rest.
    plausible = (v["population"] > 0) & (v["population"] <= policy.implausible_population)
    per_capita = v["gf_revenues"] / v["population"].where(plausible)
    low, high = policy.per_capita_gf_revenue
    odd = per_capita.notna() & ((per_capita < low) | (per_capita > high))
    found.append(_issues(v[odd], "gf_revenues", "per_capita_gf_revenue", WARNING,
                         f"general fund revenue per resident outside ${low:,.0f}-${high:,.0f}",
                         value=per_capita[odd].round(2)))

    ratio = v["opeb_funded_ratio"]
    found.append(_issues(v[ratio < 0], "opeb_funded_ratio", "funded_ratio_range", ERROR,
                         "a funded ratio cannot be below 0"))
    found.append(_issues(v[ratio > policy.funded_ratio_high], "opeb_funded_ratio",
                         "funded_ratio_high", WARNING,
                         f"funded ratio above {policy.funded_ratio_high}: check the figure"))

    found.append(_issues(v[v["fiscal_year"] > policy.today.year], "fiscal_year",
                         "future_fiscal_year", ERROR,
                         f"fiscal year ends after {policy.today.year}: not audited yet"))
    not_filed = v[list(AMOUNT_FIELDS)].isna().all(axis=1)
    found.append(_issues(v[not_filed], "(all figures)", "not_filed", WARNING,
                         "no audited statements filed for this year; kept and scored as missing",
                         value=pd.Series("", index=v.index[not_filed])))

    found.extend(_compare_with_earlier_years(v, policy))
    issues = pd.concat([f for f in found if not f.empty], ignore_index=True) if any(
        not f.empty for f in found) else pd.DataFrame(columns=ISSUE_COLUMNS)
    return issues.sort_values(["city", "fiscal_year", "entry_version", "field", "rule"],
                              ignore_index=True)


def _compare_with_earlier_years(v: pd.DataFrame, policy: ValidationPolicy) -> list[pd.DataFrame]:
    """Restatements (a prior-year column that differs from that year's own entry) and
    year-over-year jumps, against the latest version of each earlier year."""
    latest = current_versions(v)
    found = []
    for lag in (1, 2):
        compared = dict.fromkeys([*PRIOR_YEAR_COLUMNS, *YEAR_OVER_YEAR_FIELDS])
        earlier = latest[["city", "fiscal_year", "entry_version", *compared]].copy()
        earlier["fiscal_year"] = earlier["fiscal_year"] + lag
        paired = v.merge(earlier, on=KEY, suffixes=("", "_earlier"), how="inner")
        for name, reported_columns in PRIOR_YEAR_COLUMNS.items():
            reported = paired[reported_columns[lag - 1]]
            original = paired[f"{name}_earlier"]
            restated = reported.notna() & original.notna() & ((reported - original).abs() >= 0.5)
            rows = paired[restated]
            message = (
                "restates FY" + (rows["fiscal_year"] - lag).astype(int).astype(str)
                + f" {name}: entry v" + rows["entry_version_earlier"].astype(str)
                + " reported " + original[restated].map(_format_value).astype(str)
                + "; both are kept, the later report is used"
            )
            found.append(_issues(rows, reported_columns[lag - 1], "restatement", INFO, message))
        if lag == 1:
            for name in YEAR_OVER_YEAR_FIELDS:
                before = paired[f"{name}_earlier"].where(paired[f"{name}_earlier"] > 0)
                change = paired[name] / before - 1
                jump = change.abs() > policy.year_over_year_jump
                rows = paired[jump]
                message = ("changed " + change[jump].map(_percent).astype(str)
                           + f" from the year before (threshold "
                           f"{policy.year_over_year_jump:.0%})")
                found.append(_issues(rows, name, "year_over_year_jump", WARNING, message))
    return found


def _percent(change: float) -> str:
    """A relative change as a whole percentage; an infinite one (an amount beyond a float's
    range, or after a tiny one) said in words."""
    percent = change * 100
    if math.isinf(percent):
        return "by more than a float can hold"
    return f"{round(percent)}%"


def latest_valid_versions(versions: pd.DataFrame, issues: pd.DataFrame) -> pd.DataFrame:
    """Per city and fiscal year, the current version among those without errors (the one
    before if the current one fails): what downstream sees."""
    failed = set(issues.loc[issues["severity"] == ERROR, "entry_version"])
    valid = versions[~versions["entry_version"].isin(failed)]
    return current_versions(valid).sort_values(KEY, ignore_index=True)


@dataclass(frozen=True)
class CityValidation:
    """The outcome of validating some cities' versions.

    valid: per city-year, the version downstream uses.
    recorded: the issues worth keeping: those of the versions in use and of any version
        that outranks them but was refused.
    refused: the errors of the current versions; their cities are held (not scored,
        projected or reported) until the entry is fixed.
    """

    valid: pd.DataFrame
    recorded: pd.DataFrame
    refused: pd.DataFrame

    @property
    def refused_cities(self) -> list[str]:
        return sorted(set(self.refused["city"]))


def validate_cities(versions: pd.DataFrame, policy: ValidationPolicy | None = None
                    ) -> CityValidation:
    issues = validate_versions(versions, policy)
    valid = latest_valid_versions(versions, issues)
    current = current_versions(versions) if not versions.empty else versions
    shown = set(current["entry_version"]) | set(valid["entry_version"])
    recorded = issues[issues["entry_version"].isin(shown)]
    refused = recorded[(recorded["severity"] == ERROR)
                       & recorded["entry_version"].isin(current["entry_version"])]
    return CityValidation(valid, recorded.reset_index(drop=True), refused.reset_index(drop=True))


def summarise(issues: pd.DataFrame) -> dict[str, int]:
    counts = issues["severity"].value_counts()
    return {severity: int(counts.get(severity, 0)) for severity in (ERROR, WARNING, INFO)}


def first_error_per_city(issues: pd.DataFrame, key: str = "city") -> dict[str, str]:
    """For each city with an error, one line naming the file, field, rule and value of its
    first error, and how many more it has: the reason it is held back."""
    errors = issues[issues["severity"] == ERROR]
    reasons = {}
    for city, rows in errors.groupby(key, sort=True):
        first = rows.iloc[0]
        value = f" (value: {first['value']})" if first["value"] not in ("", None) else ""
        more = f" (+{len(rows) - 1} more error(s))" if len(rows) > 1 else ""
        reasons[city] = (f"{first['source_path']}: field {first['field']}: {first['rule']}: "
                         f"{first['message']}{value}{more}")
    return reasons
