import pandas as pd
import pytest

from refresh_assets.lib.change_report import (
    city_changes,
    fund_balance_chart,
    mark,
    render_city_report,
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
                              "cliff_year": [2027, None], "severity": ["long-term", "none"],
                              "methodology_version": "v1.2", "band_lower_quantile": 0.1,
                              "band_upper_quantile": 0.9})
    changes = city_changes("Vallejo", pd.concat([latest, previous]), summaries, vallejo)
    assert changes.fiscal_year == 2020
    marks = changes.indicators.set_index("indicator")["change"]
    assert marks["liquidity"] == "improved" and marks["debt burden"] == "unchanged"
    assert "fiscal cliff none within ten years → FY2027" in changes.headline
    years = pd.DataFrame({"scenario": "base", "fiscal_year": range(2021, 2031),
                          "fund_balance": range(10, 0, -1)})
    html = render_report(changes, fund_balance_chart(years, "Vallejo", changes.band))
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
                              "Vallejo", changes.band) == ""
    html = render_report(changes, "")
    assert "No projection for this city." in html and "<svg" not in html
    # No band to name, and no method: not "methodology None".
    assert "<h2>Projected fund balance</h2>" in html and "methodology" not in html


def three_scenarios(base_year: int = 2020) -> pd.DataFrame:
    """A fund balance of 50 falling by 5 a year (base), its band widening by 4 a year."""
    rows = [{"scenario": scenario, "fiscal_year": base_year + k,
             "fund_balance": (50 - 5 * k + offset * 4 * k) * 1e6}
            for scenario, offset in (("pessimistic", -1), ("base", 0), ("optimistic", 1))
            for k in range(1, 11)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("methodology", "quantiles", "band"), [
    ("v1.2", (0.1, 0.9), "10th–90th percentile (methodology v1.2)"),
    ("v1.1", (None, None), "optimistic–pessimistic (methodology v1.1)"),
    # Other quantiles are named as such.
    ("v1.2", (0.025, 0.975), "2.5th–97.5th percentile (methodology v1.2)"),
    ("v1.2", (0.01, 0.99), "1st–99th percentile (methodology v1.2)"),
])
def test_the_fund_balance_band_is_named_by_what_it_stands_for(vallejo, methodology, quantiles,
                                                               band):
    latest = score(vallejo).assign(run_rank=1, entry_version=1)
    summaries = pd.DataFrame({
        "city": "Vallejo", "scenario": ["base", "optimistic", "pessimistic"], "run_rank": 1,
        "cliff_year": None, "severity": "none", "methodology_version": methodology,
        "band_lower_quantile": quantiles[0], "band_upper_quantile": quantiles[1]})
    changes = city_changes("Vallejo", latest, summaries, vallejo)
    assert changes.band == band

    html = render_city_report(changes, three_scenarios())
    svg = html[html.index("<svg"):html.index("</svg>")]
    # The section says what the band is, the chart's legend too (svg.fonttype none keeps
    # the text as text), and the footer the method.
    assert f"<h2>Projected fund balance: base scenario in its band, {band}</h2>" in html
    assert band in svg
    assert f"projections: methodology {methodology}." in html
    # The band is one shaded area between the pessimistic and optimistic paths; the base is
    # the one line with markers, labelled in the legend.
    assert svg.count('id="FillBetweenPolyCollection_') == 1
    assert ">base<" in svg
    assert ">pessimistic<" not in svg and ">optimistic<" not in svg
