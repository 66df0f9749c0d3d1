import pandas as pd
import pytest

from refresh_assets.lib.change_report import (
    city_changes,
    fund_balance_chart,
    mark,
    render_report,
)
from refresh_assets.lib.fiscal_inputs import read_fiscal_inputs_csv
from refresh_assets.lib.notify import SmtpSettingsError, smtp_settings
from refresh_assets.lib.scoring import score
from refresh_assets.settings import DATA_DIR


def test_marks():
    assert mark(None, 5) == "new"
    assert mark(5, 5) == "unchanged"
    assert mark(5, 6) == "improved"
    assert mark(6, 5) == "worsened"


@pytest.fixture(scope="module")
def vallejo():
    figures = read_fiscal_inputs_csv(DATA_DIR / "ca_city_fiscal_inputs.csv")
    return figures[figures["city"] == "Vallejo"].reset_index(drop=True)


def test_a_report_shows_before_after_cliff_and_chart(vallejo):
    latest = score(vallejo).assign(run_rank=1, entry_version=7)
    previous = latest.assign(run_rank=2, entry_version=6)
    previous.loc[previous["fiscal_year"] == 2020, ["liquidity_points", "overall_points"]] = [
        9.0, 48.0]
    summaries = pd.DataFrame({"city": "Vallejo", "scenario": "base", "run_rank": [1, 2],
                              "cliff_year": [2027, None], "severity": ["long-term", "none"]})
    changes = city_changes("Vallejo", pd.concat([latest, previous]), summaries, vallejo)
    assert changes.fiscal_year == 2020
    marks = changes.indicators.set_index("indicator")["change"]
    assert marks["liquidity"] == "improved" and marks["debt burden"] == "unchanged"
    assert "fiscal cliff none within ten years → FY2027" in changes.headline
    years = pd.DataFrame({"scenario": "base", "fiscal_year": range(2021, 2031),
                          "fund_balance": range(10, 0, -1)})
    html = render_report(changes, fund_balance_chart(years, "Vallejo"))
    assert "<svg" in html and "What changed: Vallejo, fiscal year 2020" in html
    assert "$108,942,292" in html  # FY2020 general fund revenues
    assert 'class="improved">improved' in html


def test_email_is_off_unless_configured_and_complete():
    assert smtp_settings({}) is None
    with pytest.raises(SmtpSettingsError, match="REFRESH_SMTP_RECIPIENTS"):
        smtp_settings({"REFRESH_SMTP_HOST": "mail.example"})
    with pytest.raises(SmtpSettingsError, match="REFRESH_SMTP_SECURITY"):
        smtp_settings({"REFRESH_SMTP_HOST": "h", "REFRESH_SMTP_SECURITY": "tls"})
    settings = smtp_settings({"REFRESH_SMTP_HOST": "h", "REFRESH_SMTP_SENDER": "a@b",
                              "REFRESH_SMTP_RECIPIENTS": "x@y, z@w",
                              "REFRESH_SMTP_PASSWORD": "s3cret"})
    assert settings.recipients == ("x@y", "z@w")
    assert "s3cret" not in repr(settings)
    with pytest.raises(SmtpSettingsError, match=r"^REFRESH_SMTP_PORT must be a port number .*'abc'"):
        smtp_settings({"REFRESH_SMTP_HOST": "h", "REFRESH_SMTP_PORT": "abc"})


def test_a_city_without_a_projection_gets_a_note_not_an_empty_chart(vallejo):
    latest = score(vallejo).assign(run_rank=1, entry_version=1)
    changes = city_changes("Vallejo", latest, pd.DataFrame(
        columns=["city", "scenario", "run_rank", "cliff_year", "severity"]), vallejo)
    assert fund_balance_chart(pd.DataFrame(columns=["scenario", "fiscal_year", "fund_balance"]),
                              "Vallejo") == ""
    html = render_report(changes, "")
    assert "No projection for this city." in html and "<svg" not in html
