"""The "what changed" report per refresh, the refresh-operations record, stakeholder email."""

import time
from pathlib import Path

import dagster as dg
import pandas as pd

from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.projections import PROJECTIONS
from refresh_assets.defs.resources import ReportsResource, WarehouseResource
from refresh_assets.defs.risk import RISK_SCORES
from refresh_assets.lib import analytics_store
from refresh_assets.lib.change_report import (
    city_changes,
    fund_balance_chart,
    markdown_summary,
    render_report,
)
from refresh_assets.lib.cities import city_key
from refresh_assets.lib.fiscal_store import load_validated
from refresh_assets.lib.notify import send_html, smtp_settings
from refresh_assets.lib.run_tags import CITY as CITY_TAG
from refresh_assets.lib.run_tags import TRIGGER as TRIGGER_TAG

CHANGE_REPORT = dg.AssetKey(["reports", "change_report"])


def refresh_trigger(tags: dict[str, str]) -> str:
    if TRIGGER_TAG in tags:
        return tags[TRIGGER_TAG]
    if "dagster/sensor_name" in tags:
        return "sensor"
    if "dagster/schedule_name" in tags:
        return "schedule"
    return "manual"


@dg.asset(
    key=CHANGE_REPORT,
    group_name="reports",
    kinds={"python", "html"},
    deps=[RISK_SCORES, PROJECTIONS],
    partitions_def=city_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "Per refreshed city: an HTML report of what changed (indicators before/after, cliff "
        "year, prior-year changes, a fund-balance chart), a row in ops.refresh_operations, "
        "and an email to stakeholders when SMTP is configured."
    ),
)
def change_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                  reports: ReportsResource):
    cities = list(context.partition_keys)
    run = context.run
    with warehouse.connection() as conn:
        analytics_store.ensure_tables(conn)
        scores = analytics_store.latest_and_previous_scores(conn, cities)
        summaries = analytics_store.latest_and_previous_projections(conn, cities)
        years = analytics_store.latest_projection_years(conn, cities)
        validated = load_validated(conn, cities)

    folder = Path(reports.reports_dir)
    written, operations, summaries_md = [], [], []
    started = context.instance.get_run_record_by_id(run.run_id).start_time or time.time()
    for name in sorted(validated["city"].unique()):
        changes = city_changes(name, scores, summaries, validated)
        if changes is None:
            continue
        city_years = years[years["city"] == name] if len(years) else years
        html = render_report(changes, fund_balance_chart(city_years, name))
        path = folder / city_key(name) / f"{run.run_id}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html)
        (path.parent / "latest.html").write_text(html)
        written.append((changes, path, html))
        summaries_md.append(markdown_summary(changes))
        operations.append({
            "run_id": run.run_id, "city_key": city_key(name), "city": name,
            "trigger": refresh_trigger(run.tags), "entry_version": changes.entry_version,
            "previous_overall_points": changes.overall_before,
            "overall_points": changes.overall_after,
            "previous_overall_risk": changes.level_before, "overall_risk": changes.level_after,
            "previous_cliff_year": changes.cliff_before, "cliff_year": changes.cliff_after,
            "status": "success", "duration_seconds": round(time.time() - started, 1),
            "error": None, "report_path": str(path),
        })
    with warehouse.connection() as conn:
        analytics_store.record_refresh_operations(conn, pd.DataFrame(operations))

    emailed = _email_stakeholders(context, written)
    first = written[0] if written else None
    return dg.MaterializeResult(metadata={
        "reports_written": len(written),
        "report_path": dg.MetadataValue.path(str(first[1])) if first else "none",
        "reports_folder": dg.MetadataValue.path(str(folder)),
        "summary": dg.MetadataValue.md("\n\n".join(summaries_md[:20]) or "no city scored"),
        "emailed_to": emailed,
    })


def _email_stakeholders(context, written) -> list[str]:
    """One email per run: the report itself for one city, a digest for several."""
    settings = smtp_settings()
    if settings is None or not written:
        return []
    if len(written) == 1:
        changes, _, html = written[0]
        subject, text = f"What changed: {changes.headline}", changes.headline
    else:
        moved = [(c, p) for c, p, _ in written if c.level_before != c.level_after
                 or c.cliff_before != c.cliff_after]
        subject = f"What changed: {len(written)} cities refreshed, {len(moved)} moved"
        items = "".join(f"<li>{c.headline} — <code>{p}</code></li>" for c, p in moved)
        html = (f"<h1>{subject}</h1><ul>{items or '<li>no level or cliff year moved</li>'}</ul>")
        text = subject + "\n" + "\n".join(f"{c.headline}: {p}" for c, p in moved)
    send_html(settings, subject, html, text)
    context.log.info(f"emailed the change report to {len(settings.recipients)} recipient(s)")
    return list(settings.recipients)


@dg.run_failure_sensor(
    monitored_jobs=None,  # every job of the location: all of them refresh cities
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def refresh_failure_sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
    """Records a failed refresh in ops.refresh_operations, with the error."""
    run = context.dagster_run
    city = run.tags.get("dagster/partition") or run.tags.get(CITY_TAG) or "(several cities)"
    record = context.instance.get_run_record_by_id(run.run_id)
    duration = (record.end_time - record.start_time) if record and record.start_time \
        and record.end_time else None
    with warehouse.connection() as conn:
        analytics_store.ensure_tables(conn)
        analytics_store.record_refresh_operations(conn, pd.DataFrame([{
            "run_id": run.run_id, "city_key": city, "city": None,
            "trigger": refresh_trigger(run.tags), "status": "failure",
            "duration_seconds": duration, "error": context.failure_event.message[:2000],
        }]))
