"""The `refresh-assets` command: one module per command group, each a thin shell over lib/."""

import click

from refresh_assets.cli.bi import bi
from refresh_assets.cli.celery import celery
from refresh_assets.cli.db import db
from refresh_assets.cli.entries import enter, entry_schema, validate
from refresh_assets.cli.exports import export
from refresh_assets.cli.forecasts import backtest, calibrate, project
from refresh_assets.cli.metrics import metrics
from refresh_assets.cli.ops import ack, notifications
from refresh_assets.cli.pipeline import dbt, demo, docs, materialize, snapshot, ui
from refresh_assets.cli.refresh import refresh
from refresh_assets.cli.scores import score_command
from refresh_assets.cli.sources import check, discover


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Keep California cities' fiscal data fresh (Dagster + dbt on PostgreSQL)."""


main.add_command(db)
main.add_command(bi)
main.add_command(dbt)
main.add_command(materialize)
main.add_command(demo)
main.add_command(ui)
main.add_command(snapshot)
main.add_command(docs)
main.add_command(enter)
main.add_command(validate)
main.add_command(entry_schema)
main.add_command(score_command)
main.add_command(project)
main.add_command(backtest)
main.add_command(calibrate)
main.add_command(refresh)
main.add_command(discover)
main.add_command(check)
main.add_command(notifications)
main.add_command(ack)
main.add_command(export)
main.add_command(metrics)
main.add_command(celery)
