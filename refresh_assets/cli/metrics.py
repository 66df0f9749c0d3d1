"""`refresh-assets metrics serve`: the refresh's metrics for Prometheus on /metrics."""

from __future__ import annotations

import logging
import threading

import click
from prometheus_client import CollectorRegistry, start_http_server

from refresh_assets.cli.common import database_errors, export_environment, settings_or_exit
from refresh_assets.lib.database import ServerAddress, check_reachable
from refresh_assets.lib.metrics import IN_PROGRESS, QUEUED, RefreshMetricsCollector
from refresh_assets.lib.runtime import server_address


class DagsterRunCounts:
    """Runs queued and in progress in the Dagster instance of DAGSTER_HOME, whose database is
    `address.dagster_db`. The instance is opened at the first read that reaches it and kept
    (opening it checks its schema): the exporter starts, and says so, while the database is
    down."""

    def __init__(self, address: ServerAddress) -> None:
        self._address = address
        self._instance = None
        self._lock = threading.Lock()  # scrapes are served on threads of their own

    def __call__(self) -> dict[str, int]:
        from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

        # dagster-postgres retries a refused connection with backoff for some 12 s, past
        # Prometheus's scrape timeout: one plain connection fails at once, in plain words.
        check_reachable(self._address, self._address.dagster_db)
        with self._lock:
            if self._instance is None:
                self._instance = DagsterInstance.get()
        in_progress = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
        return {
            QUEUED: self._instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED])),
            IN_PROGRESS: self._instance.get_runs_count(RunsFilter(statuses=in_progress)),
        }


@click.group()
def metrics() -> None:
    """Metrics for Prometheus."""


@metrics.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the metrics name cities and sources: keep it local "
                   "unless Prometheus runs elsewhere).")
@click.option("--port", default=9464, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Serve /metrics: source checks, new documents, refreshes and their duration, validation
    failures, breakers, each city's last successful refresh, snapshots kept, the run queue
    and overdue filings, read from the warehouse and the Dagster instance at each scrape."""
    # Warnings and errors only: the scrape's problems, not the libraries' chatter (alembic).
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings = settings_or_exit()
    with database_errors():
        address = server_address(settings)
    # DagsterInstance.get() reads DAGSTER_HOME and the variables of dagster.yaml.
    export_environment(settings, address)
    collector = RefreshMetricsCollector(address, DagsterRunCounts(address))
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                   "choose another --port") from None
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"Prometheus metrics: http://{shown_host}:{port}/metrics of "
               f"{address.url(hide_password=True).replace('+psycopg2', '')} (Ctrl-C stops it)")
    # One read at once: a database that cannot be read is logged now rather than at the first
    # scrape, and the Dagster instance is open before Prometheus comes (opening takes seconds).
    try:
        list(collector.collect())
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
