from pathlib import Path

import pytest

from refresh_assets.lib.fiscal_inputs import FIELD_NAMES, FiscalInputsError, read_fiscal_inputs_csv
from refresh_assets.settings import DATA_DIR

SHIPPED = DATA_DIR / "ca_city_fiscal_inputs.csv"


def write_csv(tmp_path: Path, rows: list[dict[str, str]], columns=FIELD_NAMES) -> Path:
    path = tmp_path / "inputs.csv"
    lines = [",".join(columns)] + [",".join(row.get(c, "") for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_shipped_data_set_reads_whole():
    frame = read_fiscal_inputs_csv(SHIPPED)
    assert len(frame) == 1841
    assert frame["city"].nunique() == 477
    assert frame.groupby("fiscal_year").size().to_dict() == {2017: 477, 2018: 474, 2019: 467,
                                                             2020: 423}
    # Values stay as the source wrote them, for exact rounding later.
    adelanto_2017 = frame[(frame.city == "Adelanto") & (frame.fiscal_year == 2017)].iloc[0]
    assert adelanto_2017["pension_contribution_projected"] == "244029.73"


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FiscalInputsError, match="nope.csv: file not found"):
        read_fiscal_inputs_csv(tmp_path / "nope.csv")


def test_an_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(FiscalInputsError, match="empty.csv: the file is empty"):
        read_fiscal_inputs_csv(path)


def test_missing_and_unknown_columns_are_listed(tmp_path):
    columns = [c for c in FIELD_NAMES if c != "gf_revenues"] + ["gf_revenue"]
    path = write_csv(tmp_path, [{"city": "Vallejo", "fiscal_year": "2019"}], columns)
    with pytest.raises(FiscalInputsError) as error:
        read_fiscal_inputs_csv(path)
    assert "missing columns: gf_revenues" in str(error.value)
    assert "unknown columns: gf_revenue" in str(error.value)


def test_a_bad_number_names_file_line_and_field(tmp_path):
    rows = [
        {"city": "Vallejo", "fiscal_year": "2019", "gf_revenues": "123.5"},
        {"city": "Vallejo", "fiscal_year": "2020", "gf_revenues": "12O000"},  # letter O
    ]
    path = write_csv(tmp_path, rows)
    with pytest.raises(FiscalInputsError) as error:
        read_fiscal_inputs_csv(path)
    assert str(error.value) == (
        f"{path}: line 3, field gf_revenues: must be a number (value '12O000')"
    )


def test_required_fields_and_whole_numbers(tmp_path):
    rows = [{"city": "", "fiscal_year": "2019.5"}]
    path = write_csv(tmp_path, rows)
    with pytest.raises(FiscalInputsError) as error:
        read_fiscal_inputs_csv(path)
    message = str(error.value)
    assert "line 2, field city: is required" in message
    assert "line 2, field fiscal_year: must be a whole number (value '2019.5')" in message
