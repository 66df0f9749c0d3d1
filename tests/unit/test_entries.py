"""Entry files: the schema shared by the CLI and the pipeline, and every bad-input case."""

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from refresh_assets.lib.entries import (
    ParsedEntry,
    check_entry_files,
    entry_json_schema,
    parse_entry_file,
)
from refresh_assets.settings import PROJECT_DIR

SHIPPED_ENTRIES = PROJECT_DIR / "entries"
HEADER = """city: Vallejo
fiscal_year: 2019
source: {title: Vallejo CAFR 2019, url: "https://example.org/cafr.pdf", pages: {gf_revenues: 34}}
entered_by: tester
entered_at: 2026-11-20T10:00:00Z
"""


@pytest.fixture
def entries(tmp_path) -> Path:
    (tmp_path / "vallejo").mkdir()
    return tmp_path


def write(entries: Path, text: str, name: str = "vallejo/2019.yaml") -> Path:
    path = entries / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


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
    [problem] = problems_of(entries, HEADER + "figures: {gf_revenue: 5}\n")
    assert (problem.field, problem.rule) == ("figures.gf_revenue", "known_field")
    assert "did you mean gf_revenues?" in problem.message
    [top] = problems_of(entries, HEADER + "entered_byy: x\n")
    assert "did you mean entered_by?" in top.message


def test_a_wrong_type_names_field_and_value(entries):
    [problem] = problems_of(entries, HEADER + "figures: {gf_revenues: lots}\n")
    assert problem.field == "figures.gf_revenues"
    assert problem.rule.startswith("type:")
    assert problem.value == "'lots'"


def test_missing_required_parts(entries):
    problems = problems_of(entries, "city: Vallejo\nfiscal_year: 2019\n")
    assert {(p.field, p.rule) for p in problems} == {
        ("source", "required"), ("entered_by", "required"), ("entered_at", "required")}


def test_an_unknown_city_suggests_the_closest(entries):
    text = HEADER.replace("city: Vallejo", "city: Valejo")
    [problem] = problems_of(entries, text, "valejo/2019.yaml")
    assert (problem.field, problem.rule, problem.value) == ("city", "known_city", "Valejo")
    assert "did you mean Vallejo?" in problem.message


def test_a_file_in_the_wrong_place_is_refused(entries):
    [problem] = problems_of(entries, HEADER, "vallejo/2018.yaml")
    assert problem.rule == "file_location"
    assert "vallejo/2019.yaml" in problem.message


def test_the_same_city_year_in_two_files_is_refused(entries):
    first = write(entries, HEADER)
    second = write(entries, HEADER, "vallejo/2019.yml")
    parsed, problems = check_entry_files([first, second], entries)
    assert parsed == []
    assert {p.file for p in problems} == {"vallejo/2019.yaml", "vallejo/2019.yml"}
    assert all(p.rule == "one_file_per_city_year" for p in problems)


def test_pages_must_name_figures(entries):
    text = HEADER.replace("pages: {gf_revenues: 34}", "pages: {revenue: 34}")
    [problem] = problems_of(entries, text)
    assert problem.field == "source" and "revenue" in problem.message


def test_the_published_json_schema_is_current():
    assert (SHIPPED_ENTRIES / "entry.schema.json").read_text() == entry_json_schema()


def test_an_unreadable_path_is_a_problem_not_a_crash(entries):
    folder = entries / "vallejo" / "2019.yaml"
    folder.mkdir()
    [problem] = parse_entry_file(folder, entries)
    assert problem.rule == "readable"
    shutil.rmtree(folder)
