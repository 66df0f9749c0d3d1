"""`refresh-assets enter` and `refresh-assets validate`: operators' entry files."""

from __future__ import annotations

import getpass
from datetime import UTC, date, datetime
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
    value_problems,
    write_entry_file,
)
from refresh_assets.lib.validation import ERROR, NON_NEGATIVE, REQUIRED_FOR_ENTRIES
from refresh_assets.lib.valuation_entries import KIND as VALUATION
from refresh_assets.lib.valuation_entries import (
    ValuationEntryFile,
    plan_key,
    read_valuation_file,
    validate_paths,
    valuation_file_path,
    valuation_json_schema,
    valuation_value_problems,
    write_valuation_file,
)

ACFR = "acfr"
ENTRY_TYPES = (ACFR, VALUATION)
type_option = click.option(
    "--type", "entry_type", type=click.Choice(ENTRY_TYPES), default=ACFR, show_default=True,
    help="acfr: a city's figures for a fiscal year; calpers_valuation: one pension plan's "
         "CalPERS actuarial valuation.")

# For these, the figure reported for the earlier year is the natural default.
EARLIER_YEAR_SOURCES = {
    "gf_revenues_prior_year": ("gf_revenues", 1),
    "gf_revenues_two_years_prior": ("gf_revenues", 2),
    "gf_unrestricted_fund_balance_prior_year": ("gf_unrestricted_fund_balance", 1),
    "gf_unrestricted_fund_balance_two_years_prior": ("gf_unrestricted_fund_balance", 2),
}


@click.command("entry-schema")
@type_option
def entry_schema(entry_type: str) -> None:
    """Print the JSON Schema of entry files (entries/entry.schema.json is this output; with
    --type calpers_valuation, entries/calpers_valuation.schema.json)."""
    click.echo(valuation_json_schema() if entry_type == VALUATION else entry_json_schema(), nl=False)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Check entry files and CalPERS valuation files (or folders of them). Prints every
    problem as file, field, rule and value; exit status 1 if any is an error (warnings alone
    exit 0)."""
    files, problems = validate_paths(list(paths))
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


VALUATION_OPTIONS = ("plan", "valuation_date", "funded_ratio", "unfunded_accrued_liability",
                     "contributions")


def _known_city(city: str) -> str:
    if city_key(city) not in known_cities():
        near = closest_city(city)
        raise click.UsageError(f"--city {city!r}: no California city of that name"
                               + (f"; did you mean {near}?" if near else ""))
    return known_cities()[city_key(city)]


def _option_name(name: str) -> str:
    return "--contribution" if name == "contributions" else "--" + name.replace("_", "-")


@click.command()
@type_option
@click.option("--city", required=True, help="City name, as the State Auditor spells it.")
@click.option("--fiscal-year", type=int, help="Year the fiscal year ends (--type acfr).")
@click.option("--plan", help='Pension plan, e.g. "Miscellaneous" (--type calpers_valuation).')
@click.option("--valuation-date", help="YYYY-MM-DD, e.g. 2022-06-30 (--type calpers_valuation).")
@click.option("--funded-ratio", help="Market value of assets / accrued liability: 0.712 or "
                                     "71.2% (--type calpers_valuation).")
@click.option("--unfunded-accrued-liability", help="USD, negative when over-funded "
                                                   "(--type calpers_valuation).")
@click.option("--contribution", "contributions", multiple=True, metavar="FISCAL_YEAR=USD",
              help="Projected employer contribution of a fiscal year (the year it ends); "
                   "repeat for each year of the report's table (--type calpers_valuation).")
@click.option("--document", "document_url", help="URL of the source document.")
@click.option("--document-title", help="Title of the source document.")
@click.option("--entered-by", default=lambda: getpass.getuser(), show_default="your login")
@click.option("--notes", help="Free text kept with the entry.")
@click.option("--set", "assignments", multiple=True, metavar="FIELD=VALUE",
              help="A figure; may be repeated (--type acfr).")
@click.option("--non-interactive", is_flag=True,
              help="Ask nothing: use the options' values only.")
@click.option("--entries-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Default: REFRESH_ENTRIES_DIR or <project>/entries.")
@click.pass_context
def enter(ctx, entry_type, city, fiscal_year, plan, valuation_date, funded_ratio,
          unfunded_accrued_liability, contributions, document_url, document_title, entered_by,
          notes, assignments, non_interactive, entries_dir) -> None:
    """Enter (or correct) one city's figures for one fiscal year, field by field; or, with
    --type calpers_valuation, one pension plan's CalPERS valuation."""
    if entry_type == VALUATION:
        if fiscal_year is not None or assignments:
            raise click.UsageError(f"--{'fiscal-year' if fiscal_year is not None else 'set'}: "
                                   "only with --type acfr (a valuation takes --plan, "
                                   "--valuation-date, --funded-ratio, "
                                   "--unfunded-accrued-liability and --contribution)")
        entries_dir = entries_dir or settings_or_exit().entries_dir
        _enter_valuation(_known_city(city), plan, valuation_date, funded_ratio,
                         unfunded_accrued_liability, contributions, document_url, document_title,
                         entered_by, notes, non_interactive, entries_dir)
        return
    given = [name for name in VALUATION_OPTIONS if ctx.params[name]]
    if given:
        raise click.UsageError(f"{_option_name(given[0])}: only with --type calpers_valuation")
    if fiscal_year is None:
        raise click.MissingParameter(ctx=ctx, param=next(
            p for p in ctx.command.params if p.name == "fiscal_year"))
    entries_dir = entries_dir or settings_or_exit().entries_dir
    city = _known_city(city)
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


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"type:date: not a date: {text!r} (YYYY-MM-DD, e.g. 2022-06-30)") from None


def _parse_usd(text: str) -> Decimal:
    cleaned = text.strip().replace(",", "").replace("$", "")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        raise click.BadParameter(f"type:number: not a number: {text!r}") from None


def _parse_ratio(text: str) -> Decimal:
    """0.712, or 71.2% for the same."""
    cleaned = text.strip()
    percent = cleaned.endswith("%")
    value = _parse_usd(cleaned.removesuffix("%"))
    return value / 100 if percent else value


def _parse_contribution(text: str) -> tuple[int, Decimal]:
    year, sep, amount = text.partition("=")
    if not sep or not year.strip().isdigit() or len(year.strip()) != 4:
        raise click.BadParameter(f"contribution_format: {text!r}: write FISCAL_YEAR=USD, "
                                 "e.g. 2025=21500000")
    return int(year), _parse_usd(amount)


def _from_option(name: str, text: str | None, parse):
    """An option's value parsed, or a one-line usage error naming the option."""
    if text is None:
        return None
    try:
        return parse(text)
    except click.BadParameter as exc:
        raise click.UsageError(f"{_option_name(name)}: {exc.message}") from None


def _ask(name: str, meaning: str, parse, default=None):
    return click.prompt(f"{name} — {meaning}", default=None if default is None else str(default),
                        value_proc=parse)


def _required(name: str):
    raise click.UsageError(f"{_option_name(name)}: required with --non-interactive")


def _prompt_contributions(first_year: int, known: dict[int, Decimal]) -> dict[int, Decimal]:
    """Year by year from the first fiscal year; an empty answer (with no value known) ends."""
    answers: dict[int, Decimal] = {}
    for year in range(first_year, first_year + 30):
        default = known.get(year)
        text = click.prompt(f"employer contribution FY{year} (USD; empty to finish)",
                            default="" if default is None else _show(default),
                            show_default=default is not None,
                            value_proc=lambda t: t if t.strip() == "" else _parse_usd(t))
        if text == "":
            break
        answers[year] = text
    return answers


def _enter_valuation(city, plan, valuation_date, funded_ratio, unfunded_accrued_liability,
                     contributions, document_url, document_title, entered_by, notes,
                     non_interactive, entries_dir: Path) -> None:
    interactive = not non_interactive
    when = _from_option("valuation_date", valuation_date, _parse_date)
    ratio = _from_option("funded_ratio", funded_ratio, _parse_ratio)
    unfunded = _from_option("unfunded_accrued_liability", unfunded_accrued_liability, _parse_usd)
    schedule = dict(_from_option("contributions", c, _parse_contribution) for c in contributions)
    if plan is None:
        plan = _ask("plan", 'the pension plan, e.g. "Miscellaneous", "Safety Police"',
                    str) if interactive else _required("plan")
    if not plan_key(plan):
        raise click.UsageError(f"--plan {plan!r}: plan_name: needs letters or digits")
    if when is None:
        when = _ask("valuation_date", "as of (YYYY-MM-DD)", _parse_date) \
            if interactive else _required("valuation_date")
    path = valuation_file_path(entries_dir, city, when.year, plan)
    existing, problems = read_valuation_file(path, entries_dir) if path.exists() else (None, [])
    if path.exists() and existing is None:
        raise click.ClickException("\n".join(str(p) for p in problems)
                                   + f"\nfix or remove {path} first")
    before = existing.entry if existing else None
    if before:
        click.echo(f"{path} exists: its values are the defaults; Enter keeps each one.")
    if ratio is None:
        ratio = _ask("funded_ratio", "market value of assets / accrued liability (0.712 or "
                     "71.2%)", _parse_ratio, before and before.funded_ratio) \
            if interactive else _required("funded_ratio")
    if unfunded is None:
        unfunded = _ask("unfunded_accrued_liability", "USD, negative when over-funded",
                        _parse_usd, before and before.unfunded_accrued_liability) \
            if interactive else _required("unfunded_accrued_liability")
    if not schedule:
        known = dict(before.employer_contributions) if before else {}
        schedule = _prompt_contributions(min(known, default=when.year + 2), known) \
            if interactive else _required("contributions")
    standard_title = (f"{plan} Plan of the City of {city}, Annual Valuation Report as of "
                      f"{when:%B} {when.day}, {when.year}")
    if document_title is None:
        default_title = before.source.title if before else standard_title
        document_title = click.prompt("source document title", default=default_title) \
            if interactive else default_title
    try:
        entry = ValuationEntryFile(
            city=city, plan=plan, valuation_date=when, funded_ratio=ratio,
            unfunded_accrued_liability=unfunded, employer_contributions=schedule,
            source={"title": document_title,
                    "url": document_url or (before.source.url if before else None),
                    "pages": before.source.pages if before else {}},
            entered_by=entered_by, entered_at=datetime.now(UTC).replace(microsecond=0),
            notes=notes if notes is not None else (before.notes if before else None),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise click.UsageError(f"{field}: {first['msg']}") from None
    _confirm_and_write_valuation(entry, entries_dir, path, interactive=interactive)


def _confirm_and_write_valuation(entry: ValuationEntryFile, entries_dir: Path, path: Path, *,
                                 interactive: bool) -> None:
    relative = path.relative_to(entries_dir).as_posix()
    problems = valuation_value_problems(
        relative, funded_ratio=entry.funded_ratio, valuation_date=entry.valuation_date,
        contributions=entry.employer_contributions)
    click.echo(f"\n{entry.city}, {entry.plan} plan, valuation as of {entry.valuation_date}: "
               f"funded ratio {entry.funded_ratio}, unfunded accrued liability "
               f"{_show(entry.unfunded_accrued_liability)}")
    click.echo(pd.Series({f"FY{y}": _show(v) for y, v in
                          sorted(entry.employer_contributions.items())}).to_string())
    warnings = [p for p in problems if p.severity != ERROR]
    for problem in warnings:
        click.echo(str(problem))
    errors = [p for p in problems if p.severity == ERROR]
    if errors:
        # One line: the option at fault, the rule, and what was given.
        named = "; ".join(
            f"{_option_name(_VALUATION_FIELD_OPTIONS.get(p.field.split('.')[0], p.field))}: "
            f"{p.rule}: {p.message}" + (f" (value: {p.value})" if p.value else "")
            for p in errors)
        raise click.ClickException(f"not written ({relative}): {named}")
    if interactive and not click.confirm(f"Write {path}?", default=True):
        raise click.Abort()
    written = write_valuation_file(entries_dir, entry)
    click.echo(f"wrote {written}")


_VALUATION_FIELD_OPTIONS = {"employer_contributions": "contributions"}
