"""`refresh-assets project` and `backtest`: projections and their replay, over lib/."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
import pandas as pd
from psycopg2 import errors

from refresh_assets.cli.common import database_errors, settings_or_exit
from refresh_assets.lib.backtest import (
    REPLAY_BASE_YEARS,
    fund_balance_band_widths,
    replay_metrics,
    targets,
)
from refresh_assets.lib.cities import city_key, closest_city
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.fiscal_inputs import FiscalInputsError, read_fiscal_inputs_csv
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.projection_bands import (
    CALIBRATED,
    MEASURES,
    BandParameters,
    percentile_range,
)
from refresh_assets.lib.projection_calibration import calibrate as calibrate_parameters
from refresh_assets.lib.projections import METHODOLOGIES, METHODOLOGY_VERSION, projections_for
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
@click.option("--methodology", type=click.Choice(METHODOLOGIES), default=METHODOLOGY_VERSION,
              show_default=True)
@input_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def project(city: str, methodology: str, input_csv: Path | None, as_json: bool) -> None:
    """Ten-year projection of one city: three scenarios, cliff year, gap to close."""
    figures, valuations = _figures(input_csv)
    yearly, summary, match = projections_for(figures, pd.read_csv(CALPERS), valuations=valuations,
                                             methodology=methodology)
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
               f"{base['m_t0']:+.2%}, {base['n_rates']} rates), "
               f"GF share {base['phi']:.2f}, pension schedule {base['pension_schedule_source']}")
    if pd.notna(base["band_lower_quantile"]):
        quantiles = percentile_range(base["band_lower_quantile"], base["band_upper_quantile"])
        click.echo(f"band: {quantiles}; yearly spreads "
                   f"σ revenue {base['sigma_revenue']:.2%}, "
                   f"expenditures {base['sigma_expenditures']:.2%}, fund balance "
                   f"{base['sigma_fund_balance']:.2%} of expenditures")
    else:
        click.echo(f"band: revenue spread s {base['s']:.2%} compounded yearly (no percentile)")
    shown = mine[["scenario", "cliff_year", "reserve_breach_year", "severity", "gap_to_close",
                  "gap_share_of_expenditures", "fund_balance_year_10"]]
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    table = years.pivot_table(index="fiscal_year", columns="scenario", values="fund_balance")
    click.echo("\nprojected unrestricted fund balance (USD):")
    click.echo(table.to_string(float_format=lambda v: f"{v:,.0f}"))


methodology_option = click.option(
    "--methodology", type=click.Choice(METHODOLOGIES), default=None,
    help="One methodology only (default: both, side by side).")


@click.command()
@click.option("--base-year", "base_years", type=int, multiple=True,
              help="Replay from this base year (repeatable; default: 2018 and 2019, the "
                   "three replays t0=2018 → FY2019, FY2020 and t0=2019 → FY2020).")
@methodology_option
@input_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def backtest(base_years: tuple[int, ...], methodology: str | None, input_csv: Path | None,
             as_json: bool) -> None:
    """Replay: project from past base years with the data up to them and compare with what
    followed, v1.1 and v1.2 side by side, with v1.2's targets."""
    figures, _ = _figures(input_csv)  # a replay sees what was known then: no later valuation
    calpers = pd.read_csv(CALPERS)
    methods = (methodology,) if methodology else METHODOLOGIES
    replayed = base_years or REPLAY_BASE_YEARS
    results = {m: replay_metrics(figures, calpers, m, base_years=replayed) for m in methods}
    if any(r.empty for r in results.values()):
        raise click.ClickException(f"no city has actuals after FY{min(replayed)}")
    widths = {m: fund_balance_band_widths(*projections_for(figures, calpers, methodology=m)[:2])
              for m in methods}
    if as_json:
        click.echo(json.dumps({m: {"replays": json.loads(r.to_json(orient="records")),
                                   "fund_balance_half_width_share_by_k": widths[m].to_dict()}
                               for m, r in results.items()}, indent=2))
        return
    click.echo(side_by_side(results).to_string(index=False))
    click.echo("percent; persistence = the last actual carried forward; a false cliff = base "
               "fund balance below zero that year while the actual is not")
    for m in methods:
        w = widths[m]
        click.echo(f"{m}: median fund-balance band half-width {w[1]:.1%} of expenditures at "
                   f"year 1, {w[10]:.1%} at year 10")
    if set(methods) == set(METHODOLOGIES) and not base_years:
        click.echo("\nv1.2 targets:")
        for target in targets(results["v1.2"], results["v1.1"], widths["v1.2"]):
            click.echo(f"  {'met    ' if target.met else 'not met'}  {target.name}: "
                       f"{target.detail}")


def side_by_side(results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per replay cell and measure; WAPE, band coverage and false cliffs of each
    methodology beside persistence's WAPE (percent)."""
    keys = ["base_year", "fiscal_year", "measure"]
    first = next(iter(results.values()))
    table = first[[*keys, "cities"]].assign(
        persistence=(first["persistence_wape"] * 100).round(1))
    for m, r in results.items():
        table = table.merge(r[keys].assign(**{
            f"WAPE {m}": (r["wape"] * 100).round(1),
            f"coverage {m}": (r["band_coverage"] * 100).round(1),
            f"false cliffs {m}": r["false_cliffs"].astype("Int64")}), on=keys)
    table.insert(0, "replay", table["base_year"].astype(str) + " → " + table["fiscal_year"].astype(str))
    columns = ["replay", "measure", "cities", *(f"WAPE {m}" for m in results), "persistence",
               *(f"coverage {m}" for m in results), *(f"false cliffs {m}" for m in results)]
    return table.sort_values(["base_year", "fiscal_year", "measure"])[columns]


@click.command()
@input_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def calibrate(input_csv: Path | None, as_json: bool) -> None:
    """Choose v1.2's tuned parameters by cross-validation by county on the replays, and say
    whether the shipped ones are that choice."""
    figures, _ = _figures(input_csv)
    result = calibrate_parameters(figures, pd.read_csv(CALPERS),
                                  progress=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps({
            "chosen": asdict(result.chosen), "shipped": asdict(CALIBRATED),
            "by_fold": {fold: asdict(p) for fold, p in result.by_fold.items()},
            "out_of_fold": json.loads(result.out_of_fold.to_json(orient="records")),
        }, indent=2))
        return
    for fold, parameters in result.by_fold.items():
        click.echo(f"fold {fold + 1} (its counties held out): {describe(parameters)}")
    click.echo(f"all folds:  {describe(result.chosen)}")
    click.echo(f"shipped:    {describe(CALIBRATED)}"
               + ("  (the same)" if result.chosen == CALIBRATED else
                  "  DIFFERENT: update projection_bands.CALIBRATED and METHODOLOGY.md"))
    shown = result.out_of_fold.assign(**{c: (result.out_of_fold[c] * 100).round(1)
                                         for c in ("wape", "band_coverage", "persistence_wape")})
    click.echo("\nout of fold: each fold's cities under the parameters chosen without them "
               "(percent)")
    click.echo(shown[["base_year", "fiscal_year", "measure", "cities", "wape", "persistence_wape",
                      "band_coverage", "false_cliffs"]].to_string(index=False))
    if result.chosen != CALIBRATED:
        raise SystemExit(1)


def describe(parameters: BandParameters) -> str:
    measures = ", ".join(f"{m} ν0={parameters.prior_strength[m]:g} "
                         f"c={parameters.spread_multiplier[m]:g}" for m in MEASURES)
    return f"λ={parameters.fund_balance_path_weight:g}; {measures}"
