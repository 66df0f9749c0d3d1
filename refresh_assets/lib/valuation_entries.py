"""CalPERS valuation files: one pension plan's actuarial valuation, as an operator
transcribes it from CalPERS' annual valuation report (10–15 minutes a report).

A file lives at `<entries>/<city key>/calpers/<valuation year>-<plan key>.yaml`, e.g.
`entries/vallejo/calpers/2022-miscellaneous.yaml` (the plan key is the plan's name in
lower case with hyphens: "Safety Police" -> `safety-police`):

    city: Vallejo
    plan: Miscellaneous
    valuation_date: 2022-06-30
    funded_ratio: 0.712                      # market value of assets / accrued liability
    unfunded_accrued_liability: 215000000    # USD, negative when over-funded
    employer_contributions:                  # fiscal year (year it ends) -> USD
      2024: 21500000                         # the required contribution (valuation + 2)
      2025: 22300000                         # the report's projections after it
    source:
      title: Miscellaneous Plan of the City of Vallejo, Annual Valuation Report as of June 30, 2022
      url: https://...                       # optional
      pages: {employer_contributions: 9}     # optional: field -> page
    entered_by: jane.doe
    entered_at: 2026-11-20T10:15:00Z
    notes: optional free text

The schema (pydantic, `ValuationEntryFile`) is the one the CLI writes and checks and the
pipeline ingests; `entries/calpers_valuation.schema.json` is generated from it. Problems are
reported like those of ACFR entry files (`entries.Problem`), every problem of a file at
once: of form, of place, and the value rules over what could be read.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from refresh_assets.lib.cities import city_folder_problem, city_key, closest_city, known_cities
from refresh_assets.lib.entries import (
    ENTRY_FILE_SUFFIXES,
    VALUATION_FOLDER,
    Problem,
    not_utf8_problem,
    unreadable_problem,
    validate_entry_paths,
)

KIND = "calpers_valuation"
VALUATION_SCHEMA_FILE_NAME = "calpers_valuation.schema.json"
ERROR, WARNING = "error", "warning"
FUNDED_RATIO_USUAL = (Decimal("0.4"), Decimal("1.2"))
FUNDED_RATIO_MAX = Decimal(2)
# CalPERS sets a year's contribution rates from the valuation two years before it.
RATE_SETTING_LAG = 2
CONTRIBUTION_JUMP = Decimal("0.5")
FILE_STEM = re.compile(r"^(\d{4})-([a-z0-9]+(?:-[a-z0-9]+)*)$")
PAGE_FIELDS = ("valuation_date", "funded_ratio", "unfunded_accrued_liability",
               "employer_contributions")


def plan_key(plan: str) -> str:
    """The plan's key in file names: "Safety Police" -> `safety-police`."""
    return city_key(plan)


class ValuationSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, description="The valuation report the figures come from.")
    url: HttpUrl | None = Field(default=None, description="Where the report is published.")
    pages: dict[str, int] = Field(default_factory=dict,
                                  description="Page of the report for each field, where known.")

    @model_validator(mode="after")
    def pages_name_fields(self) -> ValuationSource:
        unknown = [name for name in self.pages if name not in PAGE_FIELDS]
        if unknown:
            raise ValueError(f"pages names unknown fields: {', '.join(unknown)} "
                             f"(known: {', '.join(PAGE_FIELDS)})")
        return self


class ValuationEntryFile(BaseModel):
    """One pension plan's CalPERS actuarial valuation, as transcribed by an operator."""

    model_config = ConfigDict(extra="forbid")

    city: str = Field(min_length=1, description="City name as the State Auditor spells it.")
    plan: str = Field(min_length=1, description='The plan, e.g. "Miscellaneous", "Safety Police".')
    valuation_date: date = Field(description="The valuation date (as of June 30, 2022 is "
                                             "2022-06-30); its year is the valuation year.")
    funded_ratio: Decimal = Field(description="Market value of assets / accrued liability, a "
                                              "ratio (0.712 for 71.2%).")
    unfunded_accrued_liability: Decimal = Field(description="USD; negative when over-funded.")
    employer_contributions: dict[int, Decimal] = Field(
        description="Fiscal year (the year it ends) -> employer contribution in USD: the "
                    "required contribution for the first fiscal year (valuation year + 2) and "
                    "the report's projections after it.",
        json_schema_extra={"propertyNames": {"pattern": "^[0-9]{4}$"}})
    source: ValuationSource
    entered_by: str = Field(min_length=1, description="Who transcribed the figures.")
    entered_at: datetime = Field(description="When (ISO 8601).")
    notes: str | None = None

    @property
    def valuation_year(self) -> int:
        return self.valuation_date.year

    @property
    def plan_key(self) -> str:
        return plan_key(self.plan)


@dataclass(frozen=True)
class ParsedValuation:
    path: Path
    relative_path: str
    entry: ValuationEntryFile


def is_valuation_file(path: Path) -> bool:
    return path.parent.name == VALUATION_FOLDER


def find_valuation_files(entries_dir: Path) -> list[Path]:
    """Every valuation file below `entries_dir` (YAML files in a `calpers/` folder)."""
    if not entries_dir.is_dir():
        return []
    return sorted(p for p in entries_dir.rglob("*") if p.suffix in ENTRY_FILE_SUFFIXES
                  and is_valuation_file(p) and p.is_file())


def valuation_file_path(entries_dir: Path, city: str, valuation_year: int, plan: str) -> Path:
    return (entries_dir / city_key(city) / VALUATION_FOLDER
            / f"{valuation_year}-{plan_key(plan)}.yaml")


def _amount(value: Decimal) -> str:
    return f"{value:,}"


def valuation_value_problems(file: str, *, funded_ratio: Decimal | None = None,
                             valuation_date: date | None = None,
                             contributions: dict[int, Decimal] | None = None,
                             today: date | None = None) -> list[Problem]:
    """The value rules over the values given (a rule whose value is missing is not run)."""
    today = today or date.today()
    problems = []
    if funded_ratio is not None:
        if not 0 < funded_ratio <= FUNDED_RATIO_MAX:
            problems.append(Problem(
                file, "funded_ratio", "funded_ratio_range",
                "must be above 0 and at most 2: market value of assets / accrued liability, "
                "as a ratio (0.712 for 71.2%)", str(funded_ratio)))
        elif not FUNDED_RATIO_USUAL[0] <= funded_ratio <= FUNDED_RATIO_USUAL[1]:
            problems.append(Problem(
                file, "funded_ratio", "funded_ratio_unusual",
                "outside the usual 0.4-1.2 of CalPERS plans: check it against the report",
                str(funded_ratio), WARNING))
    if valuation_date is not None and valuation_date > today:
        problems.append(Problem(file, "valuation_date", "future_valuation_date",
                                f"is after today ({today.isoformat()})",
                                valuation_date.isoformat()))
    if contributions is not None:
        problems += _contribution_problems(file, contributions, valuation_date)
    return problems


def _contribution_problems(file: str, contributions: dict[int, Decimal],
                           valuation_date: date | None) -> list[Problem]:
    field = "employer_contributions"
    years = sorted(contributions)
    problems = []
    if len(years) < 2:
        problems.append(Problem(file, field, "contribution_years",
                                "needs at least two fiscal years (the required contribution and "
                                "the projections after it)", ", ".join(map(str, years))))
    missing = sorted(set(range(years[0], years[-1] + 1)) - set(years)) if years else []
    if missing:
        problems.append(Problem(file, field, "consecutive_years",
                                "fiscal years must follow each other: missing "
                                + ", ".join(map(str, missing)), ", ".join(map(str, years))))
    for year in years:
        if contributions[year] <= 0:
            problems.append(Problem(file, f"{field}.{year}", "positive_contribution",
                                    "must be above 0 (USD)", _amount(contributions[year])))
    if valuation_date is not None and years and years[0] != valuation_date.year + RATE_SETTING_LAG:
        problems.append(Problem(
            file, field, "first_contribution_year",
            f"a valuation as of {valuation_date.isoformat()} sets the rates of fiscal year "
            f"{valuation_date.year + RATE_SETTING_LAG}: check the first year", str(years[0]),
            WARNING))
    for year in years:
        before = contributions.get(year - 1)
        if before is not None and before > 0 and contributions[year] > 0:
            change = contributions[year] / before - 1
            if abs(change) > CONTRIBUTION_JUMP:
                problems.append(Problem(
                    file, f"{field}.{year}", "contribution_jump",
                    f"changed {change:+.0%} from fiscal year {year - 1} (threshold "
                    f"{CONTRIBUTION_JUMP:.0%}): check it", _amount(contributions[year]), WARNING))
    return problems


def _schema_problems(error: ValidationError, file: str) -> tuple[list[Problem], set[str]]:
    """The schema's problems, and the top-level fields they name."""
    problems, named = [], set()
    for detail in error.errors():
        location = tuple(str(part) for part in detail["loc"])
        field = ".".join(part for part in location if part != "[key]") or "(file)"
        if location:
            named.add(location[0])
        value = "" if detail["type"] == "missing" else repr(detail.get("input"))[:80]
        if detail["type"] == "extra_forbidden":
            known = ValuationSource.model_fields if location[:1] == ("source",) \
                else ValuationEntryFile.model_fields
            near = difflib.get_close_matches(location[-1], list(known), n=1)
            hint = f"; did you mean {near[0]}?" if near else "; remove it or correct its name"
            problems.append(Problem(file, field, "known_field", f"unknown field{hint}"))
        elif detail["type"] == "missing":
            problems.append(Problem(file, field, "required", "is required"))
        else:
            message = detail["msg"].removeprefix("Value error, ")
            problems.append(Problem(file, field, f"type:{detail['type']}", message, value))
    return problems, named


_READERS = {
    "city": TypeAdapter(str), "plan": TypeAdapter(str), "valuation_date": TypeAdapter(date),
    "funded_ratio": TypeAdapter(Decimal),
    "employer_contributions": TypeAdapter(dict[int, Decimal]),
}


def _readable(data: dict[str, Any], named: set[str]) -> dict[str, Any]:
    """The fields the place and value rules need, where they can be read and no schema
    problem names them already."""
    values = {}
    for name, reader in _READERS.items():
        if name in named or data.get(name) is None:
            continue
        try:
            value = reader.validate_python(data[name])
        except ValidationError:
            continue
        if not isinstance(value, str) or value.strip():
            values[name] = value
    return values


def _place_problems(values: dict[str, Any], path: Path, relative: str) -> list[Problem]:
    """The file's place: `<key of its city>/calpers/<valuation year>-<plan key>.yaml`, in
    the folder of a known city."""
    problems = []
    folder = path.parent.parent.name
    if path.parent.name != VALUATION_FOLDER:
        problems.append(Problem(relative, "(file)", "valuation_folder",
                                f"a valuation file belongs in a {VALUATION_FOLDER}/ folder of "
                                f"its city's folder (e.g. vallejo/{VALUATION_FOLDER}/): move it"))
    folder_problem = city_folder_problem(folder)
    if folder_problem:
        problems.append(Problem(relative, "(file)", "city_folder", folder_problem))
    city, plan, valuation_date = (values.get(n) for n in ("city", "plan", "valuation_date"))
    if plan is not None and not plan_key(plan):
        problems.append(Problem(relative, "plan", "plan_name",
                                "needs letters or digits (it names the file)", plan))
        plan = None
    if city is not None and city_key(city) not in known_cities():
        near = closest_city(city)
        hint = f"; did you mean {near}?" if near else "; write the name as the State Auditor spells it"
        problems.append(Problem(relative, "city", "known_city",
                                f"no California city of that name in the city list{hint}", city))
    elif None not in (city, plan, valuation_date):
        if folder_problem:
            return problems
        expected = (Path(city_key(city)) / VALUATION_FOLDER
                    / f"{valuation_date.year}-{plan_key(plan)}{path.suffix}")
        if Path(*path.parts[-3:]) != expected:
            problems.append(Problem(relative, "(file)", "file_location",
                                    f"the {plan} valuation of {city} as of "
                                    f"{valuation_date.isoformat()} belongs at {expected}: move it "
                                    "there"))
    elif not FILE_STEM.match(path.stem):
        problems.append(Problem(relative, "(file)", "file_name",
                                "a valuation file is named <valuation year>-<plan key>.yaml "
                                "(e.g. 2022-miscellaneous.yaml)"))
    return problems


def read_valuation_file(path: Path, entries_dir: Path | None = None, *,
                        today: date | None = None) -> tuple[ParsedValuation | None, list[Problem]]:
    """Reads one valuation file: the entry (None if refused) and every problem of it, of
    form, of place and of value. Warnings alone do not refuse a file."""
    relative = path.relative_to(entries_dir).as_posix() if entries_dir else str(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        return None, [unreadable_problem(relative, exc)]
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [not_utf8_problem(relative, content, exc)]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(relative, "(file)", "yaml_syntax", f"not valid YAML{where}: {reason}")]
    if not isinstance(data, dict):
        return None, [Problem(relative, "(file)", "yaml_structure",
                              "must be a mapping of field names to values")]
    try:
        entry = ValuationEntryFile.model_validate(data)
    except ValidationError as exc:
        entry = None
        problems, named = _schema_problems(exc, relative)
    else:
        problems, named = [], set()
    values = _readable(data, named)
    problems += _place_problems(values, path, relative)
    problems += valuation_value_problems(
        relative, funded_ratio=values.get("funded_ratio"),
        valuation_date=values.get("valuation_date"),
        contributions=values.get("employer_contributions"), today=today)
    refused = entry is None or any(p.severity == ERROR for p in problems)
    return (None if refused else ParsedValuation(path, relative, entry)), problems


def check_valuation_files(paths: list[Path], entries_dir: Path | None = None, *,
                          today: date | None = None
                          ) -> tuple[list[ParsedValuation], list[Problem]]:
    """Reads files; returns those accepted (no error) and every problem found (warnings of
    accepted files too). Two files of the same city, plan and valuation year are refused."""
    parsed, problems = [], []
    for path in paths:
        item, found = read_valuation_file(path, entries_dir, today=today)
        problems += found
        if item:
            parsed.append(item)
    groups: dict[tuple[str, str, int], list[ParsedValuation]] = {}
    for item in parsed:
        e = item.entry
        groups.setdefault((city_key(e.city), e.plan_key, e.valuation_year), []).append(item)
    refused = set()
    for group in groups.values():
        if len(group) > 1:
            names = ", ".join(i.relative_path for i in group)
            for item in group:
                refused.add(item.relative_path)
                problems.append(Problem(item.relative_path, "(file)", "one_file_per_plan_year",
                                        f"the {item.entry.plan} valuation of {item.entry.city} "
                                        f"{item.entry.valuation_year} is in several files: "
                                        f"{names}; keep one"))
    return [i for i in parsed if i.relative_path not in refused], problems


def valuations_to_frame(parsed: list[ParsedValuation]) -> pd.DataFrame:
    """Accepted valuation files as rows of raw.calpers_valuation_entries."""
    records = []
    for item in parsed:
        e = item.entry
        records.append({
            "city_key": city_key(e.city),
            "city": known_cities()[city_key(e.city)],
            "plan": e.plan,
            "plan_key": e.plan_key,
            "valuation_date": e.valuation_date,
            "funded_ratio": e.funded_ratio,
            "unfunded_accrued_liability": e.unfunded_accrued_liability,
            "employer_contributions": {str(y): e.employer_contributions[y]
                                       for y in sorted(e.employer_contributions)},
            "document_title": e.source.title,
            "document_url": str(e.source.url) if e.source.url else None,
            "document_pages": dict(e.source.pages) if e.source.pages else None,
            "entered_by": e.entered_by,
            "entered_at": e.entered_at,
            "notes": e.notes,
            "source_path": item.relative_path,
        })
    return pd.DataFrame.from_records(records)


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def valuation_document(entry: ValuationEntryFile) -> dict[str, Any]:
    """The entry as YAML-ready data: plain numbers, contributions in year order."""
    document = entry.model_dump(mode="json", exclude_none=True)
    if not document["source"]["pages"]:
        del document["source"]["pages"]
    document["valuation_date"] = entry.valuation_date  # YAML's own date, unquoted
    document["funded_ratio"] = _number(entry.funded_ratio)
    document["unfunded_accrued_liability"] = _number(entry.unfunded_accrued_liability)
    document["employer_contributions"] = {
        year: _number(entry.employer_contributions[year])
        for year in sorted(entry.employer_contributions)}
    return document


def write_valuation_file(entries_dir: Path, entry: ValuationEntryFile) -> Path:
    path = valuation_file_path(entries_dir, entry.city, entry.valuation_year, entry.plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# yaml-language-server: $schema=../../{VALUATION_SCHEMA_FILE_NAME}\n"
    path.write_text(header + yaml.safe_dump(valuation_document(entry), sort_keys=False,
                                            allow_unicode=True))
    return path


def valuation_json_schema() -> str:
    return json.dumps(ValuationEntryFile.model_json_schema(), indent=2, sort_keys=True) + "\n"


def validate_paths(paths: list[Path], *, today: date | None = None
                   ) -> tuple[list[Path], list[Problem]]:
    """What `refresh-assets validate` checks: ACFR entry files and valuation files alike.
    A folder's files of both kinds; a file given by name is a valuation file when it sits
    in a `calpers/` folder. Returns the files checked and every problem."""
    acfr_paths = [p for p in paths if p.is_dir() or not is_valuation_file(p)]
    valuation_files = [f for p in paths
                       for f in (find_valuation_files(p) if p.is_dir() else
                                 [p] if is_valuation_file(p) else [])]
    acfr_files, problems = validate_entry_paths(acfr_paths) if acfr_paths else ([], [])
    _, valuation_problems = check_valuation_files(valuation_files, today=today)
    return [*acfr_files, *valuation_files], [*problems, *valuation_problems]
