"""Entry files fuzzed with hypothesis: whatever an operator's file holds (any type where a
number belongs, huge numbers, inf and nan, unicode, fields missing or unknown, broken YAML,
bytes that are no text), reading and validating it never raises. It yields the entry, whose
figures are the numbers written, or problems that each name the file, the field and a rule
of the project's; `refresh-assets validate` (with the city's other years as context) and
the pipeline's reading agree. CalPERS valuation files likewise.

What fuzzing found is kept by the `test_finding_*` tests at the end, and its inputs are in
the strategies (BEYOND_FLOAT, BOOLEAN_WORDS, "!!binary MTIz").

Derandomized and without an example database, so a CI run is repeatable and nothing is
written into the checkout."""

from __future__ import annotations

import string
import tempfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from refresh_assets.lib.entries import (
    FIGURE_FIELDS,
    FIGURE_NAMES,
    EntryFile,
    ParsedEntry,
    Problem,
    check_entry_files,
    parse_entry_file,
    validate_entry_paths,
    write_entry_file,
)
from refresh_assets.lib.valuation_entries import (
    ValuationEntryFile,
    read_valuation_file,
    validate_paths,
    write_valuation_file,
)

# Hypothesis's caches (unicode tables) go to the temporary folder, not the checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "refresh_assets_hypothesis")
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Each example of these runs the value rules (pandas) twice: fewer examples.
WITH_VALUE_RULES = settings(FUZZ, max_examples=30)
TODAY = date(2026, 11, 20)
ENTRY_NAME = "vallejo/2019.yaml"
VALUATION_NAME = "vallejo/calpers/2022-miscellaneous.yaml"
INTEGER_FIGURES = frozenset(f.name for f in FIGURE_FIELDS if f.sql_type == "integer")

# The rules a problem may name: form and place (entries.py, valuation_entries.py), the
# value rules (validation.py, valuation_entries.py); schema problems are `type:<pydantic's>`.
FORM_RULES = {"readable", "utf8", "yaml_syntax", "yaml_structure", "known_field", "required",
              "city_folder", "known_city", "file_location", "one_file_per_city_year"}
VALUE_RULES = {"non_negative", "positive_population", "overdrawn_cash", "implausible_amount",
               "large_amount", "per_capita_gf_revenue", "funded_ratio_range", "funded_ratio_high",
               "future_fiscal_year", "not_filed", "year_over_year_jump", "restatement"}
VALUATION_RULES = {"valuation_folder", "plan_name", "file_name", "funded_ratio_unusual",
                   "future_valuation_date", "contribution_years", "consecutive_years",
                   "positive_contribution", "first_contribution_year", "contribution_jump",
                   "one_file_per_plan_year"}
KNOWN_RULES = FORM_RULES | VALUE_RULES | VALUATION_RULES
# Findings (see test_finding_*), now in the strategies: whole numbers beyond a float's range
# made the value rules raise, and a YAML boolean or !!binary was read as a whole number.
BEYOND_FLOAT = 10 ** 400
BOOLEAN_WORDS = {"yes", "no", "on", "off", "true"}

BASE_ENTRY = {
    "city": "Vallejo", "fiscal_year": 2019,
    "source": {"title": "City of Vallejo ACFR FY2018-19", "url": "https://example.org/a.pdf",
               "pages": {"gf_revenues": 34}},
    "entered_by": "tester", "entered_at": "2026-11-20T10:00:00Z",
    "figures": {"population": 121692, "gf_revenues": 110163546,
                "gf_expenditures_and_transfers_out": 105000000,
                "gf_unrestricted_fund_balance": 26000000, "government_wide_revenues": 220000000},
}
BASE_VALUATION = {
    "city": "Vallejo", "plan": "Miscellaneous", "valuation_date": date(2022, 6, 30),
    "funded_ratio": 0.712, "unfunded_accrued_liability": 215000000,
    "employer_contributions": {2024: 21500000, 2025: 22300000, 2026: 23100000},
    "source": {"title": "Miscellaneous Plan of the City of Vallejo, Annual Valuation Report"},
    "entered_by": "tester", "entered_at": "2026-11-20T10:00:00Z",
}

# What an operator might type where a number belongs, and YAML's odd scalars, as text.
ODD_SCALARS = [
    "1e308", "1e309", "-1e309", ".inf", "-.inf", ".nan", "NaN", "Infinity", "inf", "nan",
    "1" + "0" * 300, "-" + "9" * 300, "0." + "0" * 400 + "1", "1_000_000", "0x1F", "0o17",
    "1,234,567", "$1,234", "12%", "1.2.3", "~", "null", *sorted(BOOLEAN_WORDS),
    "2019-06-30", "2019-06-30T10:00:00Z", "12:30:00", "'123'", '"4.5"', "[1, 2]", "{a: 1}",
    "!!binary aGVsbG8=", "!!binary MTIz", "!!float 1", "!!str 5", "&anchor 5", "*anchor", "|\n  123",
    "\u0661\u0662\u0663", "\uff11\uff12\uff13", "\u00b2", "1\u00a0000", "-0", "+5", "5.",
    ".5", "1e-400", "9" * 30 + ".99", str(BEYOND_FLOAT),
]
# Python objects yaml.safe_dump writes: a type may be any of these.
yaml_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-BEYOND_FLOAT, max_value=BEYOND_FLOAT),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40), st.dates(), st.datetimes(),
        st.sampled_from([1e308, -1e308, float("inf"), float("-inf"), float("nan"),
                         10 ** 300, -(10 ** 300), BEYOND_FLOAT, -BEYOND_FLOAT, 2 ** 63,
                         2 ** 31, 5e-324])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6)
field_names = st.one_of(
    st.sampled_from([*EntryFile.model_fields, *FIGURE_NAMES, "figures", "gf_revenue",
                     "populaton", "Population", "fiscal year", "source.title"]),
    st.text(min_size=1, max_size=20))


def fresh_folder(base: Path) -> Path:
    """A folder of its own for one example: files of earlier examples never count."""
    return Path(tempfile.mkdtemp(dir=base))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_entries")


def write_bytes(entries: Path, name: str, content: bytes) -> Path:
    path = entries / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def assert_clear(problems: list[Problem], file: str) -> None:
    """Each problem names the file, a field and a rule of the project's, and says why."""
    for problem in problems:
        assert isinstance(problem, Problem), problem
        assert problem.file == file, problem
        assert problem.field and isinstance(problem.field, str), problem
        assert problem.rule in KNOWN_RULES or problem.rule.startswith("type:"), problem
        assert problem.severity in ("error", "warning", "info"), problem
        assert problem.message.strip(), problem
        assert str(problem).startswith(f"{file}: {problem.severity}: field {problem.field}: ")


def figures_written(document: object) -> dict | None:
    """The figures of a parsed document, top level and under `figures:` (None when they
    cannot be read as a mapping)."""
    if not isinstance(document, dict):
        return None
    nested = document.get("figures")
    if nested is not None and not isinstance(nested, dict):
        return None
    return {**(nested or {}), **{k: v for k, v in document.items() if k in FIGURE_NAMES}}


def assert_figures_as_written(parsed: ParsedEntry, written: dict) -> None:
    """An accepted entry holds exactly the numbers the file wrote: no bool read as 1, no
    text or date taken for a number, nothing rounded."""
    read = parsed.entry.figures.model_dump(exclude_none=True)
    assert set(read) == {name for name, value in written.items() if value is not None}
    for name, value in read.items():
        assert value in as_written(written[name]), f"{name}: wrote {written[name]!r}, read {value!r}"
        if name in INTEGER_FIGURES:
            assert isinstance(value, int), f"{name}: {value!r}"


def as_written(given: object) -> set[Decimal]:
    """The numbers a value written in a file may stand for: the decimal it reads as, and for
    a float also its exact binary value (`population: 1e308` is that whole number)."""
    assert not isinstance(given, bool), f"{given!r} (a YAML boolean) taken for a number"
    assert isinstance(given, (int, float, Decimal, str)), f"{given!r} taken for a number"
    number = Decimal(str(given).strip())
    assert number.is_finite(), f"{given!r} taken for a number"
    return {number, Decimal(given)} if isinstance(given, float) else {number}


def read_entry(entries: Path, path: Path) -> ParsedEntry | list[Problem]:
    """The entry or its problems as the pipeline reads the file (`check_entry_files`), never
    an exception; `refresh-assets validate` (with the other years as context) finds at
    least those problems, also without raising."""
    relative = str(path.relative_to(entries))
    parsed, problems = check_entry_files([path], entries)
    _, validated = validate_entry_paths([path])
    assert_clear(problems, relative)
    assert_clear(validated, str(path))
    if parsed:
        assert problems == [] and [p.relative_path for p in parsed] == [relative]
        return parsed[0]
    assert any(p.severity == "error" for p in problems)
    assert {(p.field, p.rule) for p in problems} <= {(p.field, p.rule) for p in validated}
    return problems


@st.composite
def mutated_entries(draw) -> dict:
    """The valid entry with fields dropped, replaced by anything, or added."""
    document = yaml.safe_load(yaml.safe_dump(BASE_ENTRY))
    figures = document["figures"]
    for name in draw(st.lists(st.sampled_from(list(FIGURE_NAMES)), max_size=4)):
        figures[name] = draw(st.one_of(yaml_values, st.sampled_from([10 ** 300, 1e308,
                                                                     BEYOND_FLOAT])))
    for name in draw(st.lists(st.sampled_from(list(EntryFile.model_fields)), max_size=2,
                              unique=True)):
        document.pop(name, None)
    for name in draw(st.lists(st.sampled_from(["city", "fiscal_year", "source", "entered_by",
                                               "entered_at", "notes", "county", "figures"]),
                              max_size=2, unique=True)):
        document[name] = draw(yaml_values)
    for name, value in draw(st.dictionaries(field_names, yaml_values, max_size=2)).items():
        document[name] = value
    return document


@WITH_VALUE_RULES
@given(document=mutated_entries())
def test_any_values_and_fields_give_the_entry_or_clear_problems(scratch, document):
    entries = fresh_folder(scratch)
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    path = write_bytes(entries, ENTRY_NAME, text.encode())
    result = read_entry(entries, path)
    if isinstance(result, ParsedEntry):
        assert_figures_as_written(result, figures_written(yaml.safe_load(text)))


@WITH_VALUE_RULES
@given(figure=st.sampled_from(FIGURE_NAMES), value=st.sampled_from(ODD_SCALARS),
       nested=st.booleans())
def test_odd_numbers_typed_by_hand_give_the_figure_or_a_clear_problem(scratch, figure, value,
                                                                      nested):
    """A figure typed as text: `gf_revenues: 1e309`, 300 digits, `.nan`, `1,234`, `yes`..."""
    entries = fresh_folder(scratch)
    base = {k: v for k, v in BASE_ENTRY.items() if k != "figures"}
    figures = {k: v for k, v in BASE_ENTRY["figures"].items() if k != figure}
    text = yaml.safe_dump(base, sort_keys=False)
    lines = [f"{name}: {amount}" for name, amount in figures.items()] + [f"{figure}: {value}"]
    text += ("figures:\n" + "".join(f"  {line}\n" for line in lines) if nested
             else "".join(f"{line}\n" for line in lines))
    path = write_bytes(entries, ENTRY_NAME, text.encode())
    # A sibling year makes the rules that compare years run against the odd number too.
    sibling = {**BASE_ENTRY, "fiscal_year": 2018}
    write_bytes(entries, "vallejo/2018.yaml", yaml.safe_dump(sibling).encode())
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        document = None
    result = read_entry(entries, path)
    if isinstance(result, ParsedEntry):
        assert_figures_as_written(result, figures_written(document))


yaml_noise = st.lists(st.sampled_from([
    "city: Vallejo\n", "fiscal_year: 2019\n", "figures:\n", "  gf_revenues: 5\n", "source:\n",
    "  title: t\n", "- a\n", "[", "]", "{", "}", ": ", ":", "\t", "  ", "\n", "'", '"', "&a ",
    "*a", "*b", "!!python/object/apply:os.system ['true']\n", "!!binary x\n", "? ", "|\n",
    ">\n", "---\n", "...\n", "%YAML 1.1\n", "# comment\n", "\ufeff", "\x00", "\x85", "\u2028",
    "\ud7ff", "\U0001f4b0", "gf_revenues: " + "9" * 400 + "\n",
]) | st.text(max_size=10), max_size=25).map("".join)


@FUZZ
@given(content=st.one_of(yaml_noise.map(lambda text: text.encode("utf-8", "surrogatepass")),
                         st.binary(max_size=200),
                         st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_broken_syntax_and_bytes_give_clear_problems(scratch, content):
    entries = fresh_folder(scratch)
    path = write_bytes(entries, ENTRY_NAME, content)
    result = read_entry(entries, path)
    assert isinstance(result, list)  # no such file is a complete entry


def figure_values():
    """Amounts as an operator transcribes them: whole dollars of any size, or cents with
    at most 15 significant digits (what a YAML float keeps exactly)."""
    whole = st.integers(min_value=-BEYOND_FLOAT, max_value=BEYOND_FLOAT).map(Decimal)
    cents = st.decimals(min_value=Decimal("-9999999999999.99"),
                        max_value=Decimal("9999999999999.99"), places=2)
    return whole | cents


@st.composite
def valid_entries(draw) -> EntryFile:
    names = draw(st.lists(st.sampled_from(list(FIGURE_NAMES)), unique=True))
    figures = {name: draw(st.integers(min_value=-(10 ** 30), max_value=10 ** 30))
               if name in INTEGER_FIGURES else draw(figure_values()) for name in names}
    words = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
    return EntryFile(
        city="Vallejo", fiscal_year=draw(st.integers(min_value=1900, max_value=2026)),
        source={"title": draw(words.filter(str.strip))},
        entered_by=draw(words.filter(str.strip)),
        entered_at=draw(st.datetimes(min_value=datetime(2000, 1, 1))).isoformat(),
        notes=draw(st.none() | words), figures=figures)


@FUZZ
@given(entry=valid_entries())
def test_a_written_entry_reads_back_the_same_figures(scratch, entry):
    entries = fresh_folder(scratch)
    path = write_entry_file(entries, entry)
    result = parse_entry_file(path, entries)  # as `refresh-assets enter` reads back
    assert isinstance(result, ParsedEntry), result
    assert check_entry_files([path], entries) == ([result], [])
    assert result.entry.figures == entry.figures
    assert (result.entry.source.title, result.entry.entered_by, result.entry.notes) == (
        entry.source.title, entry.entered_by, entry.notes)


@st.composite
def mutated_valuations(draw) -> dict:
    document = dict(BASE_VALUATION, employer_contributions=dict(
        BASE_VALUATION["employer_contributions"]))
    for name in draw(st.lists(st.sampled_from(list(ValuationEntryFile.model_fields)), max_size=3,
                              unique=True)):
        if draw(st.booleans()):
            document.pop(name, None)
        else:
            document[name] = draw(yaml_values)
    for year, amount in draw(st.dictionaries(
            st.integers(min_value=-5, max_value=10 ** 6) | st.sampled_from(["2027", "x", "", "20.5"]),
            yaml_values, max_size=3)).items():
        if isinstance(document.get("employer_contributions"), dict):
            document["employer_contributions"][year] = amount
    for name, value in draw(st.dictionaries(field_names, yaml_values, max_size=2)).items():
        document[name] = value
    return document


@FUZZ
@given(document=mutated_valuations(),
       odd=st.none() | st.tuples(st.sampled_from(["funded_ratio", "unfunded_accrued_liability"]),
                                 st.sampled_from(ODD_SCALARS)))
def test_any_valuation_file_gives_the_valuation_or_clear_problems(scratch, document, odd):
    entries = fresh_folder(scratch)
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    if odd:
        name, value = odd
        lines = [line for line in text.splitlines() if not line.startswith(f"{name}:")]
        text = "\n".join([*lines, f"{name}: {value}"]) + "\n"
    path = write_bytes(entries, VALUATION_NAME, text.encode())
    parsed, problems = read_valuation_file(path, entries, today=TODAY)
    assert_clear(problems, VALUATION_NAME)
    _, validated = validate_paths([path], today=TODAY)
    assert_clear(validated, str(path))
    errors = [p for p in problems if p.severity == "error"]
    assert (parsed is None) == bool(errors)
    if parsed is not None:
        written = yaml.safe_load(text)
        entry = parsed.entry
        for name in ("funded_ratio", "unfunded_accrued_liability"):
            assert getattr(entry, name) in as_written(written[name]), name
        contributions = written["employer_contributions"]
        assert {int(year) for year in contributions} == set(entry.employer_contributions)
        for year, amount in contributions.items():
            assert entry.employer_contributions[int(year)] in as_written(amount), year


@FUZZ
@given(title=st.text(string.printable + "\u00e9\u4e2d\U0001f4b0", min_size=1).filter(str.strip),
       amount=figure_values(), ratio=st.decimals(min_value=Decimal("0.4"),
                                                 max_value=Decimal("1.2"), places=3))
def test_a_written_valuation_reads_back_the_same(scratch, title, amount, ratio):
    entries = fresh_folder(scratch)
    entry = ValuationEntryFile(**{**BASE_VALUATION, "source": {"title": title},
                                  "unfunded_accrued_liability": amount, "funded_ratio": ratio})
    path = write_valuation_file(entries, entry)
    parsed, problems = read_valuation_file(path, entries, today=TODAY)
    assert problems == [] and parsed.entry == entry


# What fuzzing found, fixed; the inputs are in the strategies above (BEYOND_FLOAT,
# BOOLEAN_WORDS, "!!binary MTIz").
def entry_with(entries: Path, year: int, **figures) -> Path:
    document = {**BASE_ENTRY, "fiscal_year": year,
                "figures": {**BASE_ENTRY["figures"], **figures}}
    return write_bytes(entries, f"vallejo/{year}.yaml", yaml.safe_dump(document).encode())


def test_finding_an_amount_beyond_a_float_is_a_problem_not_a_crash(tmp_path):
    path = entry_with(tmp_path, 2019, gf_revenues=10 ** 400)
    _, problems = validate_entry_paths([path])
    assert_clear(problems, str(path))
    implausible = [p for p in problems if p.rule == "implausible_amount"]
    assert [(p.field, p.severity) for p in implausible] == [("gf_revenues", "error")]
    assert implausible[0].value == "beyond 1.8e308 (a float's range)"


def test_finding_a_population_beyond_a_float_is_refused_not_a_crash(tmp_path):
    path = entry_with(tmp_path, 2019, population=10 ** 400)
    _, problems = validate_entry_paths([path])
    assert_clear(problems, str(path))
    assert [(p.field, p.rule, p.severity) for p in problems] == [
        ("figures.population", "type:less_than_equal", "error")]


def test_finding_a_fiscal_year_beyond_a_float_is_a_problem_not_a_crash(tmp_path):
    path = write_bytes(tmp_path, ENTRY_NAME, yaml.safe_dump(
        {**BASE_ENTRY, "fiscal_year": 10 ** 400}).encode())
    problems = parse_entry_file(path, tmp_path)
    assert_clear(problems, ENTRY_NAME)
    assert [(p.field, p.rule) for p in problems] == [("fiscal_year", "type:less_than_equal")]
    assert problems[0].message == "Input should be less than or equal to 2100"


@pytest.mark.parametrize(("before", "after"), [(110163546, 10 ** 400), (5e-324, 110163546)],
                         ids=["beyond_a_float", "after_a_tiny_year"])
def test_finding_an_infinite_jump_is_a_warning_not_a_crash(tmp_path, before, after):
    entry_with(tmp_path, 2018, gf_revenues=before)
    path = entry_with(tmp_path, 2019, gf_revenues=after)
    _, problems = validate_entry_paths([path])
    assert_clear(problems, str(path))
    jumps = [p for p in problems if p.rule == "year_over_year_jump"]
    assert [(p.field, p.severity) for p in jumps] == [("gf_revenues", "warning")]
    assert jumps[0].message.startswith("changed by more than a float can hold from the year")


@pytest.mark.parametrize("value", ["yes", "true", "on", "!!binary MTIz"])
def test_finding_a_boolean_or_bytes_is_no_population(tmp_path, value):
    text = yaml.safe_dump({k: v for k, v in BASE_ENTRY.items() if k != "figures"})
    text += "figures:\n" + "".join(f"  {name}: {amount}\n" for name, amount in
                                   {**BASE_ENTRY["figures"], "population": value}.items())
    result = parse_entry_file(write_bytes(tmp_path, ENTRY_NAME, text.encode()), tmp_path)
    assert isinstance(result, list)
    assert_clear(result, ENTRY_NAME)
    assert [(p.field, p.rule) for p in result] == [("figures.population", "type:int_type")]
    assert result[0].message.startswith("Input should be a whole number, not ")


def test_finding_a_population_the_warehouse_cannot_store_is_refused(tmp_path):
    # It passed the value rules as a warning and then failed the load of every city.
    path = entry_with(tmp_path, 2019, population=2**31)
    problems = parse_entry_file(path, tmp_path)
    assert_clear(problems, "vallejo/2019.yaml")
    assert ("figures.population", "type:less_than_equal") in [(p.field, p.rule) for p in problems]


@pytest.mark.parametrize("field", ["city", "entered_by", "notes", "source.title"])
def test_finding_a_nul_character_is_refused_where_it_is(tmp_path, field):
    # PostgreSQL text cannot hold it: it failed the load of every city of the run.
    document = {**BASE_ENTRY, "notes": "fine"}
    if field == "source.title":
        document["source"] = {**document["source"], "title": "ACFR\x00 2019"}
    else:
        document[field] = f"{document[field]}\x00"
    problems = parse_entry_file(write_bytes(tmp_path, ENTRY_NAME, yaml.safe_dump(document).encode()),
                                tmp_path)
    assert_clear(problems, ENTRY_NAME)
    assert [(p.field, p.rule) for p in problems] == [(field, "type:string_nul")]
