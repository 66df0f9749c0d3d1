"""Entry files: the schema shared by the CLI and the pipeline, and every bad-input case."""

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from refresh_assets.lib.entries import (
    ParsedEntry,
    Problem,
    check_entry_files,
    entry_json_schema,
    parse_entry_file,
    validate_entry_paths,
)
from refresh_assets.settings import PROJECT_DIR

SHIPPED_ENTRIES = PROJECT_DIR / "entries"
HEADER = """city: Vallejo
fiscal_year: 2019
source: {title: Vallejo CAFR 2019, url: "https://example.org/cafr.pdf", pages: {gf_revenues: 34}}
entered_by: tester
entered_at: 2026-11-20T10:00:00Z
"""
# What an operator entry must report, so that a test's problems are only those it makes.
REQUIRED_FIGURES = {
    "population": 121692, "gf_revenues": 110163546,
    "gf_expenditures_and_transfers_out": 105000000, "gf_unrestricted_fund_balance": 26000000,
    "government_wide_revenues": 220000000,
}


@pytest.fixture
def entries(tmp_path) -> Path:
    (tmp_path / "vallejo").mkdir()
    return tmp_path


def write(entries: Path, text: str, name: str = "vallejo/2019.yaml") -> Path:
    path = entries / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def with_figures(**figures) -> str:
    """HEADER and a figures block: the required figures, changed or added to by `figures`."""
    merged = {**REQUIRED_FIGURES, **figures}
    return HEADER + "figures:\n" + "".join(f"  {name}: {value}\n" for name, value in merged.items())


def where_and_rule(problems: list[Problem]) -> list[tuple[str, str, str]]:
    return [(p.file, p.field, p.rule) for p in problems]


def problems_of(entries: Path, text: str, name: str = "vallejo/2019.yaml"):
    result = parse_entry_file(write(entries, text, name), entries)
    assert isinstance(result, list), "expected problems, got a valid entry"
    return result


def test_the_shipped_vallejo_entries_parse():
    paths = sorted(SHIPPED_ENTRIES.glob("vallejo/*.yaml"))
    assert [p.stem for p in paths] == ["2017", "2018", "2019", "2020"]
    parsed, problems = check_entry_files(paths, SHIPPED_ENTRIES)
    assert problems == []
    entry_2019 = next(p.entry for p in parsed if p.entry.fiscal_year == 2019)
    assert entry_2019.figures.gf_revenues == Decimal("110163546")
    assert entry_2019.figures.population == 121692


def test_figures_at_the_top_level_mean_the_same(entries):
    nested = parse_entry_file(write(entries, HEADER + "figures: {gf_revenues: 5}\n"), entries)
    flat = parse_entry_file(write(entries, HEADER + "gf_revenues: 5\n"), entries)
    assert isinstance(nested, ParsedEntry) and isinstance(flat, ParsedEntry)
    assert nested.entry.figures == flat.entry.figures
    assert flat.entry.source.pages == {"gf_revenues": 34}


def test_malformed_yaml_names_the_line(entries):
    [problem] = problems_of(entries, HEADER + "figures:\n  gf_revenues: [1,\n")
    assert (problem.file, problem.rule) == ("vallejo/2019.yaml", "yaml_syntax")
    assert "line 8" in problem.message


def test_an_unknown_field_suggests_the_nearest(entries):
    [problem] = problems_of(entries, with_figures(gf_revenue=5))
    assert (problem.field, problem.rule) == ("figures.gf_revenue", "known_field")
    assert problem.message == "unknown field; did you mean gf_revenues?"
    [top] = problems_of(entries, with_figures() + "entered_byy: x\n")
    assert top.message == "unknown field; did you mean entered_by?"


def test_a_wrong_type_names_field_and_value(entries):
    [problem] = problems_of(entries, with_figures(gf_revenues="lots"))
    assert (problem.field, problem.rule, problem.value) == (
        "figures.gf_revenues", "type:decimal_parsing", "'lots'")


def test_every_problem_of_a_file_at_once(entries):
    """A wrong type, a misspelt name and a negative amount: the schema's problems and the
    value rules' over the figures that did parse, in one pass; the file is refused."""
    text = with_figures(gf_revenues="abc", gf_expenditures_and_transfers_out=-5).replace(
        "population:", "populaton:")
    problems = problems_of(entries, text)
    assert where_and_rule(problems) == [
        ("vallejo/2019.yaml", "figures.gf_revenues", "type:decimal_parsing"),
        ("vallejo/2019.yaml", "figures.populaton", "known_field"),
        ("vallejo/2019.yaml", "gf_expenditures_and_transfers_out", "non_negative"),
    ]
    assert problems[1].message == "unknown field; did you mean population?"
    assert str(problems[2]) == (
        "vallejo/2019.yaml: error: field gf_expenditures_and_transfers_out: non_negative: "
        "cannot be negative in audited statements (value: -5)")
    # The pipeline's view: nothing to ingest, the same problems.
    parsed, checked = check_entry_files([entries / "vallejo" / "2019.yaml"], entries)
    assert parsed == [] and checked == problems


def test_a_refused_file_without_a_readable_year_is_placed_by_its_name(entries):
    text = with_figures(gf_liabilities=-1).replace("fiscal_year: 2019", "fiscal_year: soon")
    assert where_and_rule(problems_of(entries, text)) == [
        ("vallejo/2019.yaml", "fiscal_year", "type:int_parsing"),
        ("vallejo/2019.yaml", "gf_liabilities", "non_negative"),
    ]


def test_well_formed_files_are_returned_for_the_pipeline_to_check_their_values(entries):
    good = write(entries, with_figures(gf_liabilities=-1))
    bad = write(entries, with_figures(gf_revenues="abc").replace("2019", "2020"),
                "vallejo/2020.yaml")
    parsed, problems = check_entry_files([good, bad], entries)
    # The negative figure of the well-formed file is ingested, then refused by validation.
    assert [p.relative_path for p in parsed] == ["vallejo/2019.yaml"]
    assert where_and_rule(problems) == [
        ("vallejo/2020.yaml", "figures.gf_revenues", "type:decimal_parsing")]


def test_missing_required_parts(entries):
    problems = problems_of(entries, "city: Vallejo\nfiscal_year: 2019\n")
    assert {(p.field, p.rule, p.severity) for p in problems} == {
        ("source", "required", "error"), ("entered_by", "required", "error"),
        ("entered_at", "required", "error"),
        # No figures: the value rules say what an operator entry lacks.
        *{(name, "required", "error") for name in REQUIRED_FIGURES},
        ("(all figures)", "not_filed", "warning"),
    }


def test_an_unknown_city_suggests_the_closest(entries):
    text = with_figures().replace("city: Vallejo", "city: Valejo")
    folder, city = problems_of(entries, text, "valejo/2019.yaml")
    assert (city.field, city.rule, city.value) == ("city", "known_city", "Valejo")
    assert city.message == "no California city of that name in the city list; did you mean Vallejo?"
    assert (folder.file, folder.field, folder.rule) == ("valejo/2019.yaml", "(file)",
                                                        "city_folder")


def test_a_file_in_the_wrong_place_is_refused(entries):
    [problem] = problems_of(entries, with_figures(), "vallejo/2018.yaml")
    assert (problem.field, problem.rule) == ("(file)", "file_location")
    assert problem.message == "an entry for Vallejo 2019 belongs at vallejo/2019.yaml: move it there"


@pytest.mark.parametrize(("folder", "city", "message"), [
    ("Vallejo", "Vallejo", "folder 'Vallejo' is not a city key (lower case ascii with hyphens): "
                           "move its files to vallejo/"),
    ("San Jose", "San Jose", "folder 'San Jose' is not a city key (lower case ascii with "
                             "hyphens): move its files to san-jose/"),
    ("vallejo-old", "Vallejo", "folder 'vallejo-old' is not a known city key: move its files to "
                               "the folder of their city, e.g. vallejo/ (the closest known key)"),
])
def test_a_folder_that_is_not_a_city_key_is_refused(entries, folder, city, message):
    text = with_figures().replace("city: Vallejo", f"city: {city}")
    [problem] = problems_of(entries, text, f"{folder}/2019.yaml")
    assert (problem.file, problem.field, problem.rule, problem.message) == (
        f"{folder}/2019.yaml", "(file)", "city_folder", message)


def test_the_same_city_year_in_two_files_is_refused(entries):
    first = write(entries, HEADER)
    second = write(entries, HEADER, "vallejo/2019.yml")
    parsed, problems = check_entry_files([first, second], entries)
    assert parsed == []
    assert {p.file for p in problems} == {"vallejo/2019.yaml", "vallejo/2019.yml"}
    assert all(p.rule == "one_file_per_city_year" for p in problems)


def test_pages_must_name_figures(entries):
    text = with_figures().replace("pages: {gf_revenues: 34}", "pages: {revenue: 34}")
    [problem] = problems_of(entries, text)
    assert problem.field == "source" and "revenue" in problem.message


def test_the_published_json_schema_is_current():
    assert (SHIPPED_ENTRIES / "entry.schema.json").read_text() == entry_json_schema()


def test_a_file_not_in_utf8_says_where_and_what_to_do(entries):
    path = entries / "vallejo" / "2019.yaml"
    path.write_bytes(with_figures().encode() + "notes: Caf\u00e9 receipts\n".encode("latin-1"))
    [problem] = parse_entry_file(path, entries)
    offset = len(with_figures().encode()) + len(b"notes: Caf")
    assert (problem.file, problem.field, problem.rule) == ("vallejo/2019.yaml", "(file)", "utf8")
    assert problem.message == (f"not UTF-8 text: byte 0xe9 at byte offset {offset} (line 12) "
                               "cannot be decoded; save the file as UTF-8")


def test_an_unreadable_path_is_a_problem_not_a_crash(entries):
    folder = entries / "vallejo" / "2019.yaml"
    folder.mkdir()
    [problem] = parse_entry_file(folder, entries)
    assert (problem.field, problem.rule) == ("(file)", "readable")
    assert problem.message == ("cannot read the file (Is a directory): make it a readable "
                               "regular file, or move it out of the entries folder")
    shutil.rmtree(folder)


def test_an_unreadable_file_is_a_problem_not_a_crash(entries):
    # The tests run as root, for whom chmod 000 leaves a file readable; /proc/self/mem is a
    # file (is_file() is true) whose reading from offset 0 fails with an I/O error.
    (entries / "vallejo" / "2019.yaml").symlink_to("/proc/self/mem")
    parsed, problems = check_entry_files([entries / "vallejo" / "2019.yaml"], entries)
    assert parsed == []
    assert [str(p) for p in problems] == [
        "vallejo/2019.yaml: error: field (file): readable: cannot read the file (Input/output "
        "error): make it a readable regular file, or move it out of the entries folder"]


def test_validate_gives_refused_files_the_other_years_as_context(entries):
    """A refused file gets the year-over-year rules too, against its city's other files."""
    write(entries, with_figures().replace("2019", "2018"), "vallejo/2018.yaml")
    jumped = write(entries, with_figures(gf_revenues=330000000, gf_liabilites=1))
    files, problems = validate_entry_paths([jumped])
    assert files == [jumped]
    assert [(p.field, p.rule, p.severity) for p in problems] == [
        ("figures.gf_liabilites", "known_field", "error"),
        ("gf_revenues", "year_over_year_jump", "warning"),
    ]
