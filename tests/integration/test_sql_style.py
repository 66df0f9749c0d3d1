"""The dbt project's SQL passes sqlfluff with the dbt templater (the style in .sqlfluff)."""

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_dbt_models_pass_sqlfluff(warehouse):
    result = run_cli("dbt", "lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All Finished" in result.stdout
