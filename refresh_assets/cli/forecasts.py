"""`refresh-assets project` and `backtest`: projections and their replay, over lib/."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd
from psycopg2 import errors

from refresh_assets.cli.common import database_errors, settings_or_exit
from refresh_assets.lib.backtest import metrics, replay
from refresh_assets.lib.cities import city_key, closest_city
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.fiscal_inputs import FiscalInputsError, read_fiscal_inputs_csv
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.projections import projections_for
from refresh_assets.lib.runtime import running_server_address
from refresh_assets.lib.valuation_store import load_current_valuations
from refresh_assets.settings import DATA_DIR

CALPERS = DATA_DIR / "calpers_valuations_2016.csv"


def _figures(input_csv: Path | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Validated figures and CalPERS valuation entries from the warehouse, or the rows of a
    CSV (and no valuation entries) when one is given."""
    if input_csv is not None:
        try:
            return read_fiscal_inputs_csv(input_csv), None
        except FiscalInputsError as exc:
            raise click.ClickException(str(exc)) from None
    settings = settings_or_exit()
    try:
        with database_errors(), warehouse_connection(running_server_address(settings)) as conn:
            figures = load_validated(conn)
            # As the pipeline projects: a city's newest valuation entry replaces the bulk schedule.
            valuations = load_current_valuations(conn, sorted(set(figures["city"].map(city_key))))
    except errors.UndefinedTable as exc:  # a warehouse that `refresh-assets db start` never prepared
        raise click.ClickException(f"the warehouse has no validated figures yet "
                                   f"({exc.diag.message_primary}): run `make demo` first or pass "
                                   "--input CSV") from None
    if figures.empty:
        raise click.ClickException("no validated figures yet: run `make demo` first")
    return figures, valuations


input_option = click.option("--input", "input_csv", type=click.Path(dir_okay=False, path_type=Path),
                            help="Read figures from this CSV instead of the warehouse.")


@click.command()
@click.option("--city", required=True)
@input_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def project(city: str, input_csv: Path | None, as_json: bool) -> None:
    """Ten-year projection of one city: three scenarios, cliff year, gap to close."""
    figures, valuations = _figures(input_csv)
    yearly, summary, match = projections_for(figures, pd.read_csv(CALPERS), valuations=valuations)
    names = {city_key(n): n for n in summary["city"]}
    if city_key(city) not in names:
        near = closest_city(city)
        raise click.ClickException(f"no projection for {city!r}"
                                   + (f"; did you mean {near}?" if near else
                                      " (no year with revenues, expenditures and fund balance)"))
    name = names[city_key(city)]
    mine, years = summary[summary["city"] == name], yearly[yearly["city"] == name]
    if as_json:
        click.echo(json.dumps({
            "city": name,
            "scenarios": json.loads(mine.to_json(orient="records")),
            "years": json.loads(years.to_json(orient="records")),
            "calpers_schedule_matched": name not in match.unmatched_cities,
        }, indent=2))
        return
    base = mine[mine["scenario"] == "base"].iloc[0]
    version = base["entry_version"] if pd.notna(base["entry_version"]) else "n/a: CSV input"
    click.echo(f"{name}: base year FY{base['base_year']} (entry version {version}), "
               f"methodology {base['methodology_version']}")
    click.echo(f"growth g {base['g']:+.2%} (city {base['g_city']:+.2%}, statewide median "
               f"{base['m_t0']:+.2%}, {base['n_rates']} rates), spread s {base['s']:.2%}, "
               f"GF share {base['phi']:.2f}, pension schedule {base['pension_schedule_source']}")
    shown = mine[["scenario", "cliff_year", "reserve_breach_year", "severity", "gap_to_close",
                  "gap_share_of_expenditures", "fund_balance_year_10"]]
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    table = years.pivot_table(index="fiscal_year", columns="scenario", values="fund_balance")
    click.echo("\nprojected unrestricted fund balance (USD):")
    click.echo(table.to_string(float_format=lambda v: f"{v:,.0f}"))


@click.command()
@click.option("--base-year", type=int, default=2018, show_default=True)
@input_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def backtest(base_year: int, input_csv: Path | None, as_json: bool) -> None:
    """Replay: project from BASE_YEAR with the data up to it and compare with what followed."""
    figures, _ = _figures(input_csv)  # a replay sees what was known then: no later valuation
    results = metrics(replay(figures, pd.read_csv(CALPERS), base_year))
    if results.empty:
        raise click.ClickException(f"no city has actuals after FY{base_year}")
    if as_json:
        click.echo(results.to_json(orient="records", indent=2))
        return
    shown = results.assign(**{c: (results[c] * 100).round(1)
                              for c in ("wape", "bias", "band_coverage", "persistence_wape")})
    click.echo(f"replay from FY{base_year} (percent; persistence = last actual carried forward)")
    click.echo(shown.to_string(index=False))
