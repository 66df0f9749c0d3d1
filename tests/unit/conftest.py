"""The real data set, read once for the projection tests."""

import pandas as pd
import pytest

from refresh_assets.lib.fiscal_inputs import read_fiscal_inputs_csv
from refresh_assets.settings import DATA_DIR


@pytest.fixture(scope="session")
def figures() -> pd.DataFrame:
    return read_fiscal_inputs_csv(DATA_DIR / "ca_city_fiscal_inputs.csv")


@pytest.fixture(scope="session")
def calpers() -> pd.DataFrame:
    return pd.read_csv(DATA_DIR / "calpers_valuations_2016.csv")
