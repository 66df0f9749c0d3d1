"""`refresh-assets enter` and `refresh-assets validate`: operators' entry files."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
import pandas as pd
from pydantic import ValidationError

from refresh_assets.cli.common import settings_or_exit
from refresh_assets.lib.cities import city_key, closest_city, known_cities
from refresh_assets.lib.entries import (
    FIGURE_FIELDS,
    FIGURE_NAMES,
    EntryFile,
    ParsedEntry,
    entry_json_schema,
    known_figures,
    parse_entry_file,
    sibling_entries,
    validate_entry_paths,
    value_problems,
    write_entry_file,
)
from refresh_assets.lib.validation import ERROR, NON_NEGATIVE, REQUIRED_FOR_ENTRIES

# For these, the figure reported for the earlier year is the natural default.
EARLIER_YEAR_SOURCES = {
    "gf_revenues_prior_year": ("gf_revenues", 1),
    "gf_revenues_two_years_prior": ("gf_revenues", 2),
    "gf_unrestricted_fund_balance_prior_year": ("gf_unrestricted_fund_balance", 1),
    "gf_unrestricted_fund_balance_two_years_prior": ("gf_unrestricted_fund_balance", 2),
}


@click.command("entry-schema")
def entry_schema() -> None:
    """Print the JSON Schema of entry files (entries/entry.schema.json is this output)."""
    click.echo(entry_json_schema(), nl=False)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Check entry files (or folders of them). Prints every problem as file, field, rule
    and value; exit status 1 if any is an error (warnings alone exit 0)."""
    files, problems = validate_entry_paths(list(paths))
    for problem in problems:
        click.echo(str(problem), err=problem.severity == ERROR)
    errors = sum(p.severity == ERROR for p in problems)
    click.echo(f"{len(files)} file(s): {errors} error(s), {len(problems) - errors} other finding(s)")
    if errors:
        raise SystemExit(1)


def _parse_amount(field_name: str, text: str, *, required: bool = False) -> Decimal | int | None:
    """An operator's number: `$1,234.50`, `-12`, or empty for not reported."""
    cleaned = text.strip().replace(",", "").replace("$", "")
    if cleaned == "":
        if required:
            raise click.BadParameter(f"{field_name}: required in an operator entry")
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise click.BadParameter(f"{field_name}: not a number: {text!r}") from None
    if field_name in NON_NEGATIVE and value < 0:
        raise click.BadParameter(f"{field_name}: cannot be negative in audited statements")
    if field_name == "population":
        if value != value.to_integral_value() or value <= 0:
            raise click.BadParameter("population: a whole number of residents, at least 1")
        return int(value)
    return value


def _show(value) -> str:
    return "" if value is None else f"{value:,}"


def _prompt_figures(figures: dict, city: str, year: int, entries_dir: Path) -> dict:
    earlier = {lag: known_figures(entries_dir, city, year - lag) for lag in (1, 2)}
    for field in FIGURE_FIELDS:
        current = figures.get(field.name)
        default = current
        hint = ""
        if current is None and field.name in EARLIER_YEAR_SOURCES:
            source, lag = EARLIER_YEAR_SOURCES[field.name]
            default = earlier[lag].get(source)
        elif field.name in earlier[1]:
            hint = f" (FY{year - 1}: {_show(earlier[1][field.name])})"
        answer = click.prompt(
            f"{field.name} — {field.meaning}{hint}",
            default=_show(default),
            show_default=default is not None,
            value_proc=lambda text, name=field.name: _parse_amount(
                name, text, required=name in REQUIRED_FOR_ENTRIES),
        )
        figures[field.name] = answer
    return {k: v for k, v in figures.items() if v is not None}


@click.command()
@click.option("--city", required=True, help="City name, as the State Auditor spells it.")
@click.option("--fiscal-year", required=True, type=int, help="Year the fiscal year ends.")
@click.option("--document", "document_url", help="URL of the source document.")
@click.option("--document-title", help="Title of the source document.")
@click.option("--entered-by", default=lambda: getpass.getuser(), show_default="your login")
@click.option("--notes", help="Free text kept with the entry.")
@click.option("--set", "assignments", multiple=True, metavar="FIELD=VALUE",
              help="A figure; may be repeated.")
@click.option("--non-interactive", is_flag=True, help="Ask nothing: use --set values only.")
@click.option("--entries-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Default: REFRESH_ENTRIES_DIR or <project>/entries.")
def enter(city, fiscal_year, document_url, document_title, entered_by, notes, assignments,
          non_interactive, entries_dir) -> None:
    """Enter (or correct) one city's figures for one fiscal year, field by field."""
    entries_dir = entries_dir or settings_or_exit().entries_dir
    if city_key(city) not in known_cities():
        near = closest_city(city)
        raise click.UsageError(f"--city {city!r}: no California city of that name"
                               + (f"; did you mean {near}?" if near else ""))
    city = known_cities()[city_key(city)]
    path = entries_dir / city_key(city) / f"{fiscal_year}.yaml"
    existing = parse_entry_file(path, entries_dir) if path.exists() else None
    if isinstance(existing, list):
        raise click.ClickException("\n".join(str(p) for p in existing)
                                   + f"\nfix or remove {path} first")
    figures = existing.entry.figures.model_dump(exclude_none=True) if existing else {}
    if existing:
        click.echo(f"{path} exists: its values are the defaults; Enter keeps each one.")
    for assignment in assignments:
        name, _, text = assignment.partition("=")
        if name not in FIGURE_NAMES:
            raise click.UsageError(f"--set {assignment}: unknown field {name!r}")
        try:
            figures[name] = _parse_amount(name, text)
        except click.BadParameter as exc:
            raise click.UsageError(f"--set {assignment}: {exc.message}") from None
    if not non_interactive:
        figures = _prompt_figures(figures, city, fiscal_year, entries_dir)
        document_title = document_title or click.prompt(
            "source document title",
            default=existing.entry.source.title if existing else
            f"City of {city} Annual Comprehensive Financial Report, FY{fiscal_year - 1}-"
            f"{str(fiscal_year)[2:]}")
    previous_source = existing.entry.source if existing else None
    try:
        entry = EntryFile(
            city=city,
            fiscal_year=fiscal_year,
            source={
                "title": document_title or (previous_source.title if previous_source else ""),
                "url": document_url or (previous_source.url if previous_source else None),
                "pages": previous_source.pages if previous_source else {},
            },
            entered_by=entered_by,
            entered_at=datetime.now(UTC).replace(microsecond=0),
            notes=notes if notes is not None else (existing.entry.notes if existing else None),
            figures={k: v for k, v in figures.items() if v is not None},
        )
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    _confirm_and_write(entry, entries_dir, path, interactive=not non_interactive)


def _confirm_and_write(entry: EntryFile, entries_dir: Path, path: Path, *, interactive: bool):
    relative = str(path.relative_to(entries_dir))
    candidate = ParsedEntry(path, relative, entry)
    context = [e for e in sibling_entries([path]) if e.entry.fiscal_year != entry.fiscal_year]
    problems = value_problems([candidate], context)
    figures = entry.figures.model_dump(exclude_none=True)
    click.echo(f"\n{entry.city}, fiscal year {entry.fiscal_year}: {len(figures)} figures")
    click.echo(pd.Series({k: _show(v) for k, v in figures.items()}).to_string())
    for problem in problems:
        click.echo(str(problem), err=problem.severity == ERROR)
    if any(p.severity == ERROR for p in problems):
        raise click.ClickException(f"not written: fix the errors above ({relative})")
    if interactive and not click.confirm(f"Write {path}?", default=True):
        raise click.Abort()
    written = write_entry_file(entries_dir, entry)
    click.echo(f"wrote {written}")
