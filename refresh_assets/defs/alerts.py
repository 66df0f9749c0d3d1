"""Operator alerts and overdue filings: the alerts sensor, the run-failure alert, and the
check `no_filing_overdue` on marts.filing_status with its daily schedule."""

from datetime import UTC, datetime

import dagster as dg

from refresh_assets.defs.resources import SlackAlertsResource, SmtpResource, WarehouseResource
from refresh_assets.lib import alerts
from refresh_assets.lib.notify import SmtpSettingsError
from refresh_assets.settings import load_settings

FILING_STATUS = dg.AssetKey(["marts", "filing_status"])
OVERDUE_SHOWN = 50  # cities listed in the check's metadata table


def send_alerts(log: dg.DagsterLogManager, conn, smtp: SmtpResource, slack: SlackAlertsResource,
                events: list[alerts.Alert]) -> str:
    """Claims the events not alerted yet and delivers them; returns what happened, in a line."""
    claimed = alerts.claim(conn, events)
    if not claimed:
        return "no new event to alert"
    try:
        email = smtp.settings(operators=True)
    except SmtpSettingsError as exc:
        log.error(f"alerts not emailed: {exc}")
        email = None
    delivery = alerts.deliver(conn, claimed, email, slack.poster())
    for error in delivery.errors:
        log.error(f"an alert was not delivered: {error}")
    channels = [name for name, on in (("email", email), ("Slack", slack.token)) if on]
    kinds = sorted({a.kind for a in claimed})
    outcome = (f"{delivery.sent} message(s) sent by {' and '.join(channels)}" if channels
               else "recorded only: set REFRESH_SMTP_HOST or SLACK_TOKEN to receive alerts")
    return (f"{len(claimed)} new event(s) ({', '.join(kinds)}): {outcome}"
            + (f", {delivery.failed} failed" if delivery.failed else ""))


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Alerts operators once per event, by email (REFRESH_SMTP_OPERATORS) and Slack when "
        "SLACK_TOKEN is set: a city that failed a stage of its refresh, a source whose "
        "breaker opened, a filing that became overdue (marts.filing_status). Every event is "
        "recorded in ops.operator_alerts before it is sent, so none is sent twice."
    ),
)
def operator_alerts_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource,
                           smtp: SmtpResource, slack: SlackAlertsResource):
    with warehouse.connection() as conn:
        events = alerts.city_failure_alerts(conn, datetime.now(UTC)) + alerts.breaker_alerts(conn)
        overdue = alerts.overdue_filings(conn)
        if overdue is None:
            context.log.info("marts.filing_status is not built yet; overdue filings are "
                             "alerted once dbt has built it")
        else:
            events += alerts.overdue_alerts(overdue)
        outcome = send_alerts(context.log, conn, smtp, slack, events)
    return dg.SkipReason(outcome)


def alert_run_failure(context: dg.RunFailureSensorContext, conn, smtp: SmtpResource,
                      slack: SlackAlertsResource, cities: list[str]) -> None:
    run = context.dagster_run
    steps = []
    for failure in context.get_step_failure_events():
        error = failure.step_failure_data.error if failure.step_failure_data else None
        while error is not None and error.cause is not None:  # the user's error, not the wrapper's
            error = error.cause
        steps.append(f"{failure.step_key}: {error.message.strip() if error else 'failed'}")
    message = "\n".join([context.failure_event.message or "the run failed", *steps])
    event = alerts.run_failure_alert(run.run_id, run.job_name, cities, message)
    context.log.info(send_alerts(context.log, conn, smtp, slack, [event]))


@dg.asset_check(
    asset=FILING_STATUS,
    description=(
        "Warns when a city's filing is overdue: an ACFR not received ACFR_DUE_MONTHS (9) after "
        "its fiscal year ended, a CalPERS valuation a year after its valuation date. Lists "
        "the cities, most overdue first; run after each dbt build and daily by "
        "filing_deadlines_schedule, as dates pass."
    ),
)
def no_filing_overdue(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        overdue = alerts.overdue_filings(conn)
    if overdue is None:
        raise dg.Failure("marts.filing_status does not exist: build the dbt models first "
                         "(refresh-assets materialize)")
    settings = load_settings()
    counts = overdue["document_type"].value_counts()
    return dg.AssetCheckResult(
        passed=overdue.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{overdue['city_key'].nunique()} city(ies) with an overdue filing"
                     if len(overdue) else "no filing overdue"),
        metadata={
            "cities_overdue": int(overdue["city_key"].nunique()),
            "acfr_overdue": int(counts.get("acfr", 0)),
            "calpers_valuation_overdue": int(counts.get("calpers_valuation", 0)),
            "rule": (f"ACFR due {settings.acfr_due_months} months after the fiscal year ends "
                     f"(month {settings.fiscal_year_end_month}); CalPERS valuation "
                     f"{settings.calpers_due_months} months after its valuation date"),
            "most_overdue": dg.MetadataValue.md(
                overdue.head(OVERDUE_SHOWN).to_markdown(index=False) if len(overdue)
                else "none"),
        },
    )


filing_deadlines_job = dg.define_asset_job(
    name="filing_deadlines",
    selection=dg.AssetSelection.checks(no_filing_overdue),
    description="Evaluates no_filing_overdue: which cities' filings are overdue today.",
)

filing_deadlines_schedule = dg.ScheduleDefinition(
    name="filing_deadlines_schedule",
    job=filing_deadlines_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: a due date passing makes a filing overdue without any new data.",
)
