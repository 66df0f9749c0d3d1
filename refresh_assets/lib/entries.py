"""Entry files: the figures an operator transcribes, one YAML file per city and fiscal year.

The schema below (pydantic) is the one the CLI writes and checks and the pipeline
ingests; `entries/entry.schema.json` is generated from it for editors. A file lives at
`<entries>/<city key>/<fiscal year>.yaml`, e.g. `entries/vallejo/2019.yaml`:

    city: Vallejo
    fiscal_year: 2019
    source:
      title: City of Vallejo Comprehensive Annual Financial Report FY2018-19
      url: https://example.org/vallejo-cafr-2019.pdf     # optional
      pages: {gf_revenues: 34}                            # optional: figure -> page
    entered_by: jane.doe
    entered_at: 2026-11-20T10:15:00Z
    notes: optional free text
    figures:                     # or the same keys at the top level
      population: 121692
      gf_revenues: 107234000
      ...

Figures use the data dictionary's field names (`fiscal_inputs.FIELDS`); any may be left
out. Checks here are about form (encoding, YAML, names, types) and place (city, folder,
file name); the rules about values are in `validation.py`, and a refused file gets those
too, over the figures that could be read, so that one pass shows every problem.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from refresh_assets.lib.cities import (
    CITY_LIST,
    city_folder_problem,
    city_key,
    closest_city,
    known_cities,
)
from refresh_assets.lib.fiscal_inputs import FIELDS, read_fiscal_inputs_csv
from refresh_assets.lib.validation import validate_versions

IDENTITY_FIELDS = ("city", "county", "fiscal_year")
FIGURE_FIELDS = tuple(f for f in FIELDS if f.name not in IDENTITY_FIELDS)
FIGURE_NAMES = tuple(f.name for f in FIGURE_FIELDS)
ENTRY_FILE_SUFFIXES = (".yaml", ".yml")
SCHEMA_FILE_NAME = "entry.schema.json"
# A city's CalPERS valuation files live in this subfolder of its folder (a kind of their
# own: `valuation_entries.py`); they are no ACFR entry files.
VALUATION_FOLDER = "calpers"


def _no_boolean_or_bytes(value: Any) -> Any:
    """pydantic reads True as 1 and b"123" as 123 for an int; in a YAML file they are
    `yes`/`on`/`true` and `!!binary`, never a number the operator meant."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a whole number, not a YAML "
                                  "boolean (yes/no, true/false, on/off)")
    if isinstance(value, (bytes, bytearray)):
        raise PydanticCustomError("int_type", "Input should be a whole number, not binary "
                                  "data (!!binary)")
    return value


def _no_nul(value: str) -> str:
    """PostgreSQL text cannot hold a NUL character: one in any file would fail the load of
    every city of the run, so the file is refused instead."""
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "Input should be text without a NUL character "
                                  "(\\0), which the warehouse cannot store")
    return value


# The warehouse stores whole numbers as PostgreSQL integer: a larger one would fail the load
# of every city of the run (the value rules flag a population over 40 million anyway).
WholeNumber = Annotated[int, Field(le=2**31 - 1), BeforeValidator(_no_boolean_or_bytes)]
Text = Annotated[str, AfterValidator(_no_nul)]
# Years an entry may be for: California's cities date from 1850; beyond 2100 is a typo (the
# value rules refuse years not yet audited). The bounds go before the validator, so the
# JSON schema shows them as minimum and maximum.
FiscalYear = Annotated[int, Field(ge=1850, le=2100), BeforeValidator(_no_boolean_or_bytes)]

Figures = create_model(
    "Figures",
    __config__=ConfigDict(extra="forbid"),
    **{
        f.name: (WholeNumber | None if f.sql_type == "integer" else Decimal | None,
                 Field(default=None, description=f.meaning))
        for f in FIGURE_FIELDS
    },
)


class SourceDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Text = Field(min_length=1, description="The document the figures come from.")
    url: HttpUrl | None = Field(default=None, description="Where the document is published.")
    pages: dict[str, WholeNumber] = Field(default_factory=dict,
                                  description="Page of the document for each figure, where known.")

    @model_validator(mode="after")
    def pages_name_figures(self) -> SourceDocument:
        unknown = [name for name in self.pages if name not in FIGURE_NAMES]
        if unknown:
            raise ValueError(f"pages names unknown figures: {', '.join(unknown)}")
        return self


class EntryFile(BaseModel):
    """One city's figures for one fiscal year, as transcribed by an operator."""

    model_config = ConfigDict(extra="forbid")

    city: Text = Field(min_length=1, description="City name as the State Auditor spells it.")
    fiscal_year: FiscalYear = Field(description="Year the fiscal year ends (FY2018-19 is 2019).")
    county: Text | None = Field(default=None, description="County, without the word County.")
    source: SourceDocument
    entered_by: Text = Field(min_length=1, description="Who transcribed the figures.")
    entered_at: datetime = Field(description="When (ISO 8601).")
    notes: Text | None = None
    figures: Figures = Field(default_factory=Figures)  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def collect_top_level_figures(cls, data: Any) -> Any:
        """Figures may sit at the top level or under `figures:`; both mean the same."""
        if not isinstance(data, dict):
            return data
        top_level = {k: data[k] for k in data if k in FIGURE_NAMES}
        if not top_level:
            return data
        rest = {k: v for k, v in data.items() if k not in top_level}
        nested = rest.get("figures") or {}
        if not isinstance(nested, dict):
            return data
        both = sorted(set(top_level) & set(nested))
        if both:
            raise ValueError(f"given both at the top level and under figures: {', '.join(both)}")
        rest["figures"] = {**nested, **top_level}
        return rest


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an entry: where, which field, which rule, and what was found."""

    file: str
    field: str
    rule: str
    message: str
    value: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        shown = f" (value: {self.value})" if self.value else ""
        return f"{self.file}: {self.severity}: field {self.field}: {self.rule}: {self.message}{shown}"


@dataclass(frozen=True)
class ParsedEntry:
    path: Path
    relative_path: str
    entry: EntryFile


def _known_names_for(location: tuple) -> list[str]:
    if location[:1] == ("figures",):
        return list(FIGURE_NAMES)
    if location[:1] == ("source",):
        return list(SourceDocument.model_fields)
    return [*EntryFile.model_fields, *FIGURE_NAMES]


def _nearest_known_name(location: tuple) -> str | None:
    near = difflib.get_close_matches(location[-1], _known_names_for(location[:-1]), n=1)
    return near[0] if near else None


def _problems_from(error: ValidationError, file: str) -> tuple[list[Problem], set[str]]:
    """The schema's problems, and the figures they already name (a bad value, or the
    figure a misspelt name most likely means): the value rules say nothing more on those."""
    problems = []
    named_figures = set()
    for detail in error.errors():
        location = tuple(str(part) for part in detail["loc"])
        field = ".".join(location) or "(file)"
        value = "" if detail["type"] == "missing" else repr(detail.get("input"))[:80]
        if location[:1] == ("figures",) and location[-1] in FIGURE_NAMES:
            named_figures.add(location[-1])
        if detail["type"] == "extra_forbidden":
            near = _nearest_known_name(location)
            if near in FIGURE_NAMES:
                named_figures.add(near)
            hint = f"; did you mean {near}?" if near else "; remove it or correct its name"
            problems.append(Problem(file, field, "known_field", f"unknown field{hint}"))
        elif detail["type"] == "missing":
            problems.append(Problem(file, field, "required", "is required"))
        else:
            message = detail["msg"].removeprefix("Value error, ")
            problems.append(Problem(file, field, f"type:{detail['type']}", message, value))
    return problems, named_figures


@dataclass(frozen=True)
class _Reading:
    """One file as read: the entry if nothing is wrong with it; otherwise its problems of
    form and place, and for the value rules what could be read (`salvaged`: city, fiscal
    year and the figures that parsed, as a row of versions) but for the figures a problem
    already names (`named_figures`)."""

    relative_path: str
    problems: list[Problem]
    parsed: ParsedEntry | None = None
    salvaged: dict[str, Any] | None = None
    named_figures: frozenset[str] = frozenset()


def _read_entry(path: Path, entries_dir: Path | None, content: bytes | None = None) -> _Reading:
    relative = str(path.relative_to(entries_dir)) if entries_dir else str(path)
    try:
        content = path.read_bytes() if content is None else content
    except OSError as exc:
        return _Reading(relative, [unreadable_problem(relative, exc)])
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Reading(relative, [not_utf8_problem(relative, content, exc)])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        return _Reading(relative, [Problem(relative, "(file)", "yaml_syntax",
                                           f"not valid YAML{where}: {reason}")])
    if not isinstance(data, dict):
        return _Reading(relative, [Problem(relative, "(file)", "yaml_structure",
                                           "must be a mapping of field names to values")])
    city, fiscal_year = _identity_of(data)
    try:
        entry = EntryFile.model_validate(data)
    except ValidationError as exc:
        problems, named_figures = _problems_from(exc, relative)
    else:
        problems, named_figures = [], set()
    problems += _identity_problems(city, fiscal_year, path, relative)
    if problems:
        return _Reading(relative, problems, salvaged=_salvage(data, city, fiscal_year, path,
                                                              relative),
                        named_figures=frozenset(named_figures))
    return _Reading(relative, [], ParsedEntry(path, relative, entry))


def unreadable_problem(file: str, error: OSError) -> Problem:
    return Problem(file, "(file)", "readable",
                   f"cannot read the file ({error.strerror or error}): make it a readable "
                   "regular file, or move it out of the entries folder")


def not_utf8_problem(file: str, content: bytes, error: UnicodeDecodeError) -> Problem:
    line = content.count(b"\n", 0, error.start) + 1
    return Problem(file, "(file)", "utf8",
                   f"not UTF-8 text: byte 0x{content[error.start]:02x} at byte offset "
                   f"{error.start} (line {line}) cannot be decoded; save the file as UTF-8",
                   repr(content[max(0, error.start - 10):error.start + 10]))


_YEAR = TypeAdapter(FiscalYear)


def _identity_of(data: dict[str, Any]) -> tuple[str | None, int | None]:
    """The city and fiscal year a file gives, where they can be read whatever else is wrong."""
    city = data.get("city") if isinstance(data.get("city"), str) and data["city"].strip() else None
    try:
        fiscal_year = _YEAR.validate_python(data.get("fiscal_year"))
    except ValidationError:
        fiscal_year = None
    return city, fiscal_year


def _salvage(data: dict[str, Any], city: str | None, fiscal_year: int | None, path: Path,
             relative: str) -> dict[str, Any] | None:
    """A rejected file's figures that parse, as a version row for the value rules. Without a
    readable fiscal year the file name's (`2019.yaml`) places it; without either, the value
    rules cannot place the figures and are not run on them."""
    if fiscal_year is None:
        try:
            fiscal_year = _YEAR.validate_python(path.stem if path.stem.isdigit() else None)
        except ValidationError:
            return None
    nested = data.get("figures")
    given = {**(nested if isinstance(nested, dict) else {}),
             **{k: v for k, v in data.items() if k in FIGURE_NAMES}}
    figures = {}
    for name, value in given.items():
        if name not in FIGURE_NAMES:
            continue
        try:
            figures.update(Figures.model_validate({name: value}).model_dump(exclude_none=True))
        except ValidationError:
            continue  # reported by the schema's problems already
    return {"city": known_cities().get(city_key(city), city) if city else "",
            "fiscal_year": fiscal_year, **figures, "source_kind": "entry_file",
            "source_path": relative}


def _identity_problems(city: str | None, fiscal_year: int | None, path: Path, relative: str
                       ) -> list[Problem]:
    """The file's place: its folder must be a known city's key, its city a known city, and
    the file `<key of its city>/<its fiscal year>.yaml`. Each is checked where the file
    gives what it needs."""
    problems = []
    folder_problem = city_folder_problem(path.parent.name)
    if folder_problem:
        problems.append(Problem(relative, "(file)", "city_folder", folder_problem))
    if city is not None and city_key(city) not in known_cities():
        near = closest_city(city)
        hint = f"; did you mean {near}?" if near else "; write the name as the State Auditor spells it"
        problems.append(Problem(relative, "city", "known_city",
                                f"no California city of that name in the city list{hint}", city))
    elif city is not None and fiscal_year is not None and not folder_problem:
        expected = Path(city_key(city)) / f"{fiscal_year}{path.suffix}"
        if Path(*path.parts[-2:]) != expected:
            problems.append(Problem(relative, "(file)", "file_location",
                                    f"an entry for {city} {fiscal_year} belongs at {expected}: "
                                    "move it there"))
    return problems


def parse_entry_file(path: Path, entries_dir: Path | None = None) -> ParsedEntry | list[Problem]:
    """Reads one entry file; returns the entry, or every problem found in it: of form, of
    place, and the value rules' over the figures that could be read."""
    reading = _read_entry(path, entries_dir)
    if reading.parsed:
        return reading.parsed
    return reading.problems + _rejected_value_problems([reading], []).get(reading.relative_path, [])


def find_entry_files(entries_dir: Path) -> list[Path]:
    """Every ACFR entry file below `entries_dir`, in a stable order: the YAML files outside
    the `calpers/` folders of valuation files (`valuation_entries.find_valuation_files`)."""
    if not entries_dir.is_dir():
        return []
    return sorted(p for p in entries_dir.rglob("*") if p.suffix in ENTRY_FILE_SUFFIXES
                  and p.parent.name != VALUATION_FOLDER and p.is_file())


def check_entry_files(paths: list[Path], entries_dir: Path | None = None, *,
                      context: list[ParsedEntry] | None = None,
                      contents: dict[Path, bytes] | None = None
                      ) -> tuple[list[ParsedEntry], list[Problem]]:
    """Parses files; also refuses two files for the same city and fiscal year.

    Returns the well-formed entries and every problem of the files refused: of form and
    place, and the value rules' over what of them could be read (with the other files, and
    `context`, for the rules that compare years). The value rules over the entries returned
    are the caller's: the pipeline runs them after ingestion, over every version."""
    # `contents`: bytes already read (the entries sensor's), parsed instead of reading again.
    readings = [_read_entry(path, entries_dir, (contents or {}).get(path)) for path in paths]
    parsed = [r.parsed for r in readings if r.parsed]
    value_problems_by_file = _rejected_value_problems(
        [r for r in readings if not r.parsed], [*(context or []), *parsed])
    problems = [problem for r in readings
                for problem in [*r.problems, *value_problems_by_file.get(r.relative_path, [])]]
    by_city_year: dict[tuple[str, int], list[ParsedEntry]] = {}
    for item in parsed:
        by_city_year.setdefault((city_key(item.entry.city), item.entry.fiscal_year), []).append(item)
    duplicated = {id(i) for group in by_city_year.values() if len(group) > 1 for i in group}
    for group in by_city_year.values():
        if len(group) > 1:
            names = ", ".join(i.relative_path for i in group)
            problems.extend(
                Problem(i.relative_path, "(file)", "one_file_per_city_year",
                        f"{i.entry.city} {i.entry.fiscal_year} is entered in several files: "
                        f"{names}; keep one")
                for i in group
            )
    return [i for i in parsed if id(i) not in duplicated], problems


def _rejected_value_problems(rejected: list[_Reading], context: list[ParsedEntry]
                             ) -> dict[str, list[Problem]]:
    """The value rules over the figures of refused files that could be read, by file;
    `context` (well-formed entries) serves the rules that compare years."""
    salvaged = [r for r in rejected if r.salvaged is not None]
    if not salvaged:
        return {}
    rows = pd.DataFrame.from_records([r.salvaged for r in salvaged])
    versions = pd.concat([entries_to_frame(context), rows], ignore_index=True)
    versions["entry_version"] = range(1, len(versions) + 1)
    named = {r.relative_path: r.named_figures for r in salvaged}
    by_file: dict[str, list[Problem]] = {}
    for problem in _as_problems(validate_versions(versions), set(named)):
        already_named = named[problem.file]
        # With a figure unreadable, "no figures at all" may well be untrue.
        if problem.field in already_named or (already_named and problem.rule == "not_filed"):
            continue
        by_file.setdefault(problem.file, []).append(problem)
    return by_file


def _as_problems(issues: pd.DataFrame, files: set[str]) -> list[Problem]:
    shown = issues[issues["source_path"].isin(files)]
    return [Problem(row.source_path, row.field, row.rule, row.message, row.value, row.severity)
            for row in shown.itertuples()]


def value_problems(parsed: list[ParsedEntry], context: list[ParsedEntry]) -> list[Problem]:
    """The value rules over well-formed entries, with other years' entries as context for
    the rules that compare years."""
    issues = validate_versions(versions_for_checking([*context, *parsed]))
    return _as_problems(issues, {p.relative_path for p in parsed})


def sibling_entries(paths: list[Path]) -> list[ParsedEntry]:
    """The well-formed other files of the folders of `paths`: other years of the same
    cities, for the year-over-year and restatement rules."""
    given = {p.resolve() for p in paths}
    siblings = {s for p in paths for s in find_entry_files(p.parent) if s.resolve() not in given}
    readings = (_read_entry(s, None) for s in sorted(siblings))
    return [r.parsed for r in readings if r.parsed]


def validate_entry_paths(paths: list[Path]) -> tuple[list[Path], list[Problem]]:
    """What `refresh-assets validate` checks: the files given, or the entry files of the
    folders given, and every problem of each (form, place, values), with the other years'
    files of the same cities as context. Returns the files checked and the problems."""
    files = [f for p in paths for f in (find_entry_files(p) if p.is_dir() else [p])]
    context = sibling_entries(files)
    parsed, problems = check_entry_files(files, context=context)
    return files, problems + value_problems(parsed, context)


def entries_to_frame(parsed: list[ParsedEntry]) -> pd.DataFrame:
    """Entry files as rows of the raw table (figures as the operator wrote them)."""
    records = []
    for item in parsed:
        entry = item.entry
        official = known_cities()[city_key(entry.city)]
        records.append({
            "city": official,
            "county": entry.county,
            "fiscal_year": entry.fiscal_year,
            **entry.figures.model_dump(),
            "source_kind": "entry_file",
            "source_path": item.relative_path,
            "document_title": entry.source.title,
            "document_url": str(entry.source.url) if entry.source.url else None,
            "document_pages": json.dumps(entry.source.pages) if entry.source.pages else None,
            "entered_by": entry.entered_by,
            "entered_at": entry.entered_at.isoformat(),
            "notes": entry.notes,
        })
    return pd.DataFrame.from_records(records)


def entry_document(entry: EntryFile) -> dict[str, Any]:
    """The entry as YAML-ready data: figures in data-dictionary order, empty ones left out."""
    document = entry.model_dump(mode="json", exclude_none=True)
    if not document["source"]["pages"]:
        del document["source"]["pages"]
    figures = entry.figures.model_dump(exclude_none=True)
    document["figures"] = {
        name: int(value) if isinstance(value, int) or value == value.to_integral_value()
        else float(value)
        for name, value in ((n, figures[n]) for n in FIGURE_NAMES if n in figures)
    }
    return document


def write_entry_file(entries_dir: Path, entry: EntryFile) -> Path:
    path = entries_dir / city_key(entry.city) / f"{entry.fiscal_year}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Editors with a YAML language server check the file as it is typed.
    header = f"# yaml-language-server: $schema=../{SCHEMA_FILE_NAME}\n"
    path.write_text(header + yaml.safe_dump(entry_document(entry), sort_keys=False,
                                            allow_unicode=True))
    return path


def entry_json_schema() -> str:
    return json.dumps(EntryFile.model_json_schema(), indent=2, sort_keys=True) + "\n"


def known_figures(entries_dir: Path, city: str, fiscal_year: int) -> dict[str, Any]:
    """A city-year's figures as last known: its entry file if any, else the published data."""
    path = entries_dir / city_key(city) / f"{fiscal_year}.yaml"
    if path.exists():
        parsed = parse_entry_file(path, entries_dir)
        if isinstance(parsed, ParsedEntry):
            return parsed.entry.figures.model_dump(exclude_none=True)
    published = published_figures()
    row = published[(published["city"] == city) & (published["fiscal_year"] == fiscal_year)]
    if row.empty:
        return {}
    return {k: v for k, v in row.iloc[0][list(FIGURE_NAMES)].items() if pd.notna(v)}


@cache
def published_figures() -> pd.DataFrame:
    return read_fiscal_inputs_csv(CITY_LIST)


def versions_for_checking(parsed: list[ParsedEntry]) -> pd.DataFrame:
    """Entry files as versions the validation rules take (numbered in the order given)."""
    frame = entries_to_frame(parsed)
    if not frame.empty:
        frame["entry_version"] = range(1, len(frame) + 1)
    return frame
