"""The "what changed" report per refresh, the refresh-operations record, stakeholder email."""

import time
from pathlib import Path

import dagster as dg
import pandas as pd

from refresh_assets.defs.alerts import alert_run_failure
from refresh_assets.defs.entries import RAW_FISCAL_ENTRIES
from refresh_assets.defs.outcomes import describe_cities, held_cities, record_failures
from refresh_assets.defs.partitions import city_partitions, run_city_keys
from refresh_assets.defs.projections import PROJECTIONS
from refresh_assets.defs.resources import (
    CityLocksResource,
    ReportsResource,
    SlackAlertsResource,
    SmtpResource,
    WarehouseResource,
)
from refresh_assets.defs.risk import RISK_SCORES
from refresh_assets.defs.validation import VALIDATED_FISCAL_DATA
from refresh_assets.lib import analytics_store, refresh_outcomes
from refresh_assets.lib.change_report import (
    compose_email,
    markdown_summary,
    plan_reports,
    render_isolated,
    write_report,
)
from refresh_assets.lib.cities import city_key, known_cities
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.notify import EmailError, SmtpSettingsError, send_html
from refresh_assets.lib.run_tags import refresh_trigger

CHANGE_REPORT = dg.AssetKey(["reports", "change_report"])
# The assets of a city's refresh, whose failure is the city's (ops.refresh_operations).
REFRESH_STEPS = frozenset({RAW_FISCAL_ENTRIES, VALIDATED_FISCAL_DATA, RISK_SCORES, PROJECTIONS,
                           CHANGE_REPORT})
# Jobs that refresh cities; a run of a whole job names no asset selection.
REFRESH_JOBS = frozenset({"refresh_all", "refresh_city"})


@dg.asset(
    key=CHANGE_REPORT,
    group_name="reports",
    kinds={"python", "html"},
    deps=[RISK_SCORES, PROJECTIONS],
    partitions_def=city_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "Per refreshed city: an HTML report of what changed (indicators before/after, cliff "
        "year, prior-year changes, a fund-balance chart), rendered again only when what it "
        "shows changed; the city's row in ops.refresh_operations; an email to stakeholders "
        "when SMTP is configured (its outcome in ops.notifications, never a failed refresh)."
    ),
)
def change_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                  reports: ReportsResource, smtp: SmtpResource,
                  city_locks: CityLocksResource):  # held for the whole run: one refresh per city
    run = context.run
    with warehouse.connection() as conn:
        held = held_cities(context, conn)
        todo = [c for c in context.partition_keys if c not in held]
        scores = analytics_store.latest_and_previous_scores(conn, todo)
        summaries = analytics_store.latest_and_previous_projections(conn, todo)
        years = analytics_store.latest_projection_years(conn, todo)
        validated = load_validated(conn, todo)
        previous = refresh_outcomes.latest_report_checksums(conn, todo)

    names = {city_key(n): n for n in validated["city"].unique()}
    planned = plan_reports(names, scores, summaries, years, validated)
    reports_planned = [p for group in planned.results for p in group]
    # An unchanged city keeps its report: rendering (the chart above all) is the cost here.
    stale = [p for p in reports_planned if p.city_key not in previous
             or previous[p.city_key][0] != p.checksum or not Path(previous[p.city_key][1]).exists()]
    rendered = render_isolated(stale)
    html_by_city = {k: v for part in rendered.results for k, v in part.items()}
    errors = {**planned.errors, **rendered.errors}
    for key, trace in {**planned.tracebacks, **rendered.tracebacks}.items():
        context.log.debug(f"{key}: report failed:\n{trace}")

    folder = Path(reports.reports_dir)
    started = context.instance.get_run_record_by_id(run.run_id).start_time or time.time()
    written, operations = [], []
    for report in reports_planned:
        if report.city_key in errors:
            continue
        changes = report.changes
        if report.city_key in html_by_city:
            path = write_report(folder, report.city_key, run.run_id, html_by_city[report.city_key])
            written.append((changes, path, html_by_city[report.city_key]))
        else:
            path = Path(previous[report.city_key][1])
        operations.append({
            "city_key": report.city_key, "city": changes.city,
            "entry_version": changes.entry_version,
            "previous_overall_points": changes.overall_before,
            "overall_points": changes.overall_after,
            "previous_overall_risk": changes.level_before, "overall_risk": changes.level_after,
            "previous_cliff_year": changes.cliff_before, "cliff_year": changes.cliff_after,
            "duration_seconds": round(time.time() - started, 1),
            "report_path": str(path), "report_checksum": report.checksum,
        })
    # A city with no score at all (no validated year) has nothing to report; it still counts
    # as refreshed, so every city of the run ends with one outcome.
    reported = {o["city_key"] for o in operations}
    operations += [{"city_key": c, "city": known_cities().get(c, c)} for c in todo
                   if c not in reported and c not in errors]
    with warehouse.connection() as conn:
        refresh_outcomes.record_successes(conn, run.run_id, refresh_trigger(run.tags),
                                          pd.DataFrame(operations))
        record_failures(context, conn, "report", errors)
        emailed = _email_stakeholders(context, conn, smtp, written)

    # Every city's current report, rendered now or kept: the UI leads from here to each one.
    paths = [(o["city"], o["report_path"]) for o in operations if o.get("report_path")]
    return dg.MaterializeResult(metadata={
        **describe_cities(context, "report", errors, held),
        "reports_written": len(written),
        "reports_unchanged": len(reports_planned) - len(stale),
        "report_path": dg.MetadataValue.path(paths[0][1]) if paths else "none",
        "reports": dg.MetadataValue.md(
            "| city | report |\n|---|---|\n"
            + "\n".join(f"| {city} | `{path}` |" for city, path in paths[:50])
            if paths else "none"),
        "reports_folder": dg.MetadataValue.path(str(folder)),
        "summary": dg.MetadataValue.md("\n\n".join(markdown_summary(c) for c, _, _ in written[:20])
                                       or "no report changed"),
        "email": emailed,
    })


def _email_stakeholders(context: dg.AssetExecutionContext, conn, smtp: SmtpResource,
                        written) -> str:
    """One email per run for the reports written; its outcome is recorded in ops.notifications
    and returned for the metadata. A failed email never fails the refresh: the reports are
    stored, and the operator is told which setting to check."""
    if not written:
        return "nothing new to send"
    try:
        settings = smtp.settings()
    except SmtpSettingsError as exc:
        settings, error = None, str(exc)
    else:
        if settings is None:
            return "off (REFRESH_SMTP_HOST is not set)"
        error = None
    subject, html, text = compose_email(written)
    if settings is not None:
        try:
            send_html(settings, subject, html, text)
        except EmailError as exc:
            error = str(exc)
    recipients = settings.recipients if settings else ()
    refresh_outcomes.record_notification(conn, context.run.run_id, "email", subject, recipients,
                                         error)
    if error:
        context.log.error(f"the change reports are stored, but the email failed: {error}")
        return f"failed: {error}"
    context.log.info(f"emailed the change report to {len(recipients)} recipient(s)")
    return f"sent to {', '.join(recipients)}"


@dg.run_failure_sensor(
    monitored_jobs=None,  # every job of the location
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def refresh_failure_sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource,
                           smtp: SmtpResource, slack: SlackAlertsResource):
    """Records a failed run: each of its cities that has no outcome yet fails at stage "run"
    with the run's error (cities already recorded keep their outcome: one per run and city);
    then alerts operators once (ops.operator_alerts)."""
    run = context.dagster_run
    # A run that refreshes no city (an export, a dbt rebuild) leaves the cities' outcomes alone.
    refreshed = run.job_name in REFRESH_JOBS or bool((run.asset_selection or set()) & REFRESH_STEPS)
    cities = run_city_keys(run, context.instance) if refreshed else []
    with warehouse.connection() as conn:
        if cities:
            record = context.instance.get_run_record_by_id(run.run_id)
            duration = (record.end_time - record.start_time) if record and record.start_time \
                and record.end_time else None
            names = known_cities()
            refresh_outcomes.record_failures(conn, run.run_id, refresh_trigger(run.tags), "run",
                                             pd.DataFrame({
                                                 "city_key": cities,
                                                 "city": [names.get(c, c) for c in cities],
                                                 "duration_seconds": duration,
                                                 "error": context.failure_event.message[:2000]}))
        alert_run_failure(context, conn, smtp, slack, cities)
