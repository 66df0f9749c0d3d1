"""The lists dbt hard-codes in its macros match the Python ones they mirror.

dbt cannot import Python, so the figure and indicator names are written twice; a column
added on one side only would silently drop out of the marts (or fail at build time).
The macros are parsed as text: no dbt run is needed.
"""

import re

from refresh_assets.lib.fiscal_inputs import FIELDS
from refresh_assets.lib.scoring import INDICATORS
from refresh_assets.settings import DBT_PROJECT_DIR

MACROS = DBT_PROJECT_DIR / "macros"
NOT_FIGURES = {"city", "county", "fiscal_year"}


def macro_list(path, macro: str) -> list[str]:
    """The quoted names inside `{{ return([...]) }}` of `macro` in the file at `path`."""
    text = path.read_text()
    body = re.search(r"\{%-?\s*macro\s+" + re.escape(macro) + r"\(.*?\{%-?\s*endmacro",
                     text, re.DOTALL)
    assert body, f"macro {macro} not found in {path}"
    listed = re.search(r"return\(\s*\[(.*?)\]\s*\)", body.group(0), re.DOTALL)
    assert listed, f"macro {macro} returns no list literal"
    return re.findall(r"'([^']*)'", listed.group(1))


def test_macro_parser_reads_every_quoted_name(tmp_path):
    macro = tmp_path / "m.sql"
    macro.write_text("{% macro other() -%}{{ return(['x']) }}{%- endmacro %}\n"
                     "{% macro names() -%}\n    {{ return([\n        'a', 'b',\n"
                     "        'c',\n    ]) }}\n{%- endmacro %}\n")
    assert macro_list(macro, "names") == ["a", "b", "c"]


def test_fiscal_figure_names_equal_the_python_fields_in_order():
    figures = [f.name for f in FIELDS if f.name not in NOT_FIGURES]
    assert macro_list(MACROS / "fiscal_figure_columns.sql", "fiscal_figure_names") == figures


def test_score_indicator_names_equal_the_python_indicators_in_order():
    assert macro_list(MACROS / "score_indicator_names.sql", "score_indicator_names") == list(
        INDICATORS)


def test_the_risk_scores_mart_takes_its_indicators_from_the_macro():
    # A list written again in the model would escape the test above.
    model = (DBT_PROJECT_DIR / "models" / "marts" / "city_risk_scores.sql").read_text()
    assert "score_indicator_names()" in model
    assert not any(f"'{name}'" in model for name in INDICATORS)
