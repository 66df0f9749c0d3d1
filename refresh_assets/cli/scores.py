"""`refresh-assets score`: the State Auditor's scores for a CSV of fiscal inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from refresh_assets.lib.fiscal_inputs import FiscalInputsError, read_fiscal_inputs_csv
from refresh_assets.lib.scoring import score


@click.command("score")
@click.argument("input_csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the scores here instead of standard output.")
def score_command(input_csv: Path, output: Path | None) -> None:
    """Score every row of INPUT_CSV (the columns of data/ca_city_fiscal_inputs.csv): overall
    points and risk, the reserves trend, and each indicator's ratio, points and risk."""
    try:
        frame = read_fiscal_inputs_csv(input_csv)
    except FiscalInputsError as exc:
        raise click.ClickException(str(exc)) from None
    scores = score(frame)
    scores.to_csv(output or sys.stdout, index=False, float_format="%.2f")
    if output:
        click.echo(f"scored {len(scores):,} rows into {output}", err=True)
