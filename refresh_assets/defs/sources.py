"""Source documents: the sensor that checks the registry's pages, and the asset that stores
and announces what it found.

The sensor does the checks itself: an unchanged page costs a conditional GET, so a tick
over hundreds of sources takes seconds. It records every check and document in the
database (ops.refresh_checks, ops.source_documents) and keeps in its cursor the last
document it has started work for: after a daemon restart, documents recorded but not yet
dispatched are dispatched, and none twice (the run key names the document).
"""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from refresh_assets.defs.partitions import city_partitions
from refresh_assets.defs.resources import SmtpResource, SourceRegistryResource, WarehouseResource
from refresh_assets.lib.cities import known_cities
from refresh_assets.lib.notify import EmailError, SmtpSettingsError, send_html
from refresh_assets.lib.run_tags import CITY, ONE_CITY_MAX_RUNTIME, TRIGGER
from refresh_assets.lib.sources.checking import CheckResult, check_sources, fetch_policy
from refresh_assets.lib.sources.fetching import FetchError, PoliteFetcher
from refresh_assets.lib.sources.notifications import DocumentNotice, compose_notice
from refresh_assets.lib.sources.registry import Registry
from refresh_assets.lib.sources.store import (
    city_documents_to_handle,
    claim_email,
    last_errors,
    new_documents_after,
    record_download,
    record_email,
    reliability,
)

SOURCE_DOCUMENTS = dg.AssetKey(["ops", "source_documents"])
OFF_SITE = ("host_not_allowed", "redirect_off_site")


def _markdown(frame: pd.DataFrame) -> dg.MarkdownMetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "none")


def sources_metadata(conn, registry: Registry, city: str) -> dict:
    """The city's sources as the UI shows them: reliability (share of successful checks
    among the last 30), breaker state and last error."""
    ids = [s.source_id for s in registry.selected(city)]
    table = reliability(conn, ids)
    errors = last_errors(conn, ids)
    table["reliability"] = (table["successes"] / table["checks"].where(table["checks"] > 0)).round(3)
    table["last_error"] = table["source_id"].map(errors).fillna("")
    failing = table.loc[(table["breaker_state"] != "closed") | (table["consecutive_failures"] > 0),
                        "source_id"].tolist()
    shown = table[["source_id", "reliability", "checks", "breaker_state", "consecutive_failures",
                   "last_checked_at", "last_error"]]
    return {
        "sources": _markdown(shown),
        "sources_failing": ", ".join(failing) or "none",
        "lowest_reliability": float(table["reliability"].min()) if table["reliability"].notna().any()
        else dg.MetadataValue.null(),
    }


@dg.asset(
    key=SOURCE_DOCUMENTS,
    group_name="sources",
    kinds={"python", "postgres"},
    partitions_def=city_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "The documents the source sensor found for a city (ops.source_documents): stored, "
        "content-addressed, when downloads are enabled, and announced to operators, one email "
        "per new document (ops.refresh_notifications; never two, also across restarts). Its "
        "observations carry each source's reliability and breaker state."
    ),
)
def source_documents(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     smtp: SmtpResource, source_registry: SourceRegistryResource):
    registry = source_registry.registry()
    plans = {s.source_id: s.plan for s in registry.sources}
    downloads = registry.checks.downloads.enabled
    try:
        email = smtp.settings(operators=True)
        email_problem = None
    except SmtpSettingsError as exc:
        email, email_problem = None, str(exc)
        context.log.error(f"operator emails not sent: {exc}")
    emailed = failed = stored = 0
    handled = []
    download_errors: list[tuple[str, int, str]] = []
    with PoliteFetcher(fetch_policy(registry)) as fetcher, warehouse.connection() as conn:
        for city in context.partition_keys:
            documents = city_documents_to_handle(conn, city)
            for doc in documents.itertuples():
                if downloads and doc.download_status == "not_requested":
                    try:
                        kept = fetcher.download(doc.url, Path(source_registry.documents_dir))
                    except FetchError as exc:
                        off_site = exc.kind in OFF_SITE
                        record_download(conn, doc.document_id,
                                        "not_allowed" if off_site else "failed", error=str(exc))
                        # A documents folder full or unwritable is the operator's to fix.
                        (context.log.error if exc.kind == "storage" else context.log.warning)(str(exc))
                        if not off_site:
                            download_errors.append((city, int(doc.fiscal_year), str(exc)))
                    else:
                        record_download(conn, doc.document_id, "stored", sha256=kept.sha256,
                                        path=str(kept.path), size=kept.bytes)
                        stored += 1
                if doc.status == "completed" or doc.email_status in ("sent", "sending"):
                    continue
                if email is None:
                    record_email(conn, doc.notification_id, "failed" if email_problem else "off",
                                 email_problem)
                    continue
                if not claim_email(conn, doc.notification_id):
                    continue
                subject, html, text = compose_notice(DocumentNotice(
                    doc.notification_id, known_cities()[city], doc.doc_type, int(doc.fiscal_year),
                    doc.url, doc.title, plans.get(doc.source_id)))
                try:
                    send_html(email, subject, html, text)
                except EmailError as exc:
                    record_email(conn, doc.notification_id, "failed", str(exc))
                    context.log.error(str(exc))
                    failed += 1
                else:
                    record_email(conn, doc.notification_id, "sent")
                    context.log.info(f"emailed operators: {subject}")
                    emailed += 1
            handled.append(city_documents_to_handle(conn, city))
        cities = list(context.partition_keys)
        source_meta = sources_metadata(conn, registry, cities[0]) if len(cities) == 1 else {}
    table = pd.concat(handled, ignore_index=True) if handled else pd.DataFrame()
    return dg.MaterializeResult(metadata={
        "documents": _markdown(table[["notification_id", "city_key", "doc_type", "fiscal_year",
                                      "status", "email_status", "download_status", "url"]].tail(50)
                               if len(table) else table),
        "emails_sent": emailed,
        "emails_failed": failed,
        "documents_stored": stored,
        "downloads_failed": len(download_errors),
        "download_errors": _markdown(pd.DataFrame(download_errors,
                                                  columns=["city_key", "fiscal_year", "error"])),
        **source_meta,
    })


source_documents_job = dg.define_asset_job(
    name="source_documents",
    selection=dg.AssetSelection.assets(SOURCE_DOCUMENTS),
    partitions_def=city_partitions,
    description="Store and announce a city's newly found source documents.",
    tags=ONE_CITY_MAX_RUNTIME,
)


def _noteworthy(result: CheckResult) -> bool:
    """Checks worth an observation in the UI: a changed page, a failure, a recovery. Routine
    304s are recorded in ops.refresh_checks only (a tick a minute over hundreds of sources
    would bury the UI's event log)."""
    return result.outcome in ("changed", "failed") or (result.was_failing and
                                                       result.outcome in ("unchanged", "not_modified"))


@dg.sensor(job=source_documents_job, minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING)
def source_documents_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource,
                            source_registry: SourceRegistryResource):
    """Checks every due source of the registry (politely: conditional GET, rate limit per
    host, robots.txt, a circuit breaker per source) and starts one run per city with new
    documents. A failing source is logged and shown on its city's observation; the other
    sources go on."""
    registry = source_registry.registry()
    results = check_sources(warehouse.address(), registry, registry.sources)
    for result in results:
        if result.outcome == "failed":
            opened = " (its breaker is now open)" if result.breaker.state == "open" else ""
            context.log.warning(f"{result.source.source_id}: {result.error}{opened}")

    known = set(context.instance.get_dynamic_partitions(city_partitions.name))
    registry_cities = {s.city_key for s in registry.sources}
    dispatched_through = json.loads(context.cursor or "{}").get("dispatched_through", 0)
    noteworthy_cities = sorted({r.source.city_key for r in results if _noteworthy(r)} & known)
    with warehouse.connection() as conn:
        pending = new_documents_after(conn, dispatched_through)
        observations = [dg.AssetObservation(SOURCE_DOCUMENTS, partition=city,
                                            metadata=sources_metadata(conn, registry, city))
                        for city in noteworthy_cities]
    by_city: dict[str, int] = {}
    for document in pending:
        by_city[document["city_key"]] = max(by_city.get(document["city_key"], 0), document["document_id"])
    run_requests = [
        dg.RunRequest(partition_key=city, run_key=f"source_documents:{city}:{last_document}",
                      tags={TRIGGER: "source_documents_sensor", CITY: city})
        for city, last_document in sorted(by_city.items())
    ]
    new_partitions = sorted((registry_cities | set(by_city)) - known)
    checked = [r for r in results if r.outcome not in ("not_due", "breaker_open", "deferred")]
    outcomes = pd.Series([r.outcome for r in results]).value_counts().to_dict() if results else {}
    summary = (f"{len(checked)} source(s) checked, {len(pending)} new document(s); "
               + ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())))
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[city_partitions.build_add_request(new_partitions)]
        if new_partitions else [],
        asset_events=observations,
        cursor=json.dumps({"dispatched_through": max([dispatched_through, *by_city.values()])}),
        skip_reason=None if run_requests else summary,
    )
