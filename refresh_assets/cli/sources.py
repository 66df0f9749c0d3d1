"""`refresh-assets discover` (the ACFRs and CalPERS valuations a listing page links to) and
`refresh-assets check` (the source sensor's check, once)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import click

from refresh_assets.cli.common import database_errors, settings_or_exit
from refresh_assets.lib.database import warehouse_connection
from refresh_assets.lib.runtime import running_server_address
from refresh_assets.lib.sources.checking import CheckResult, check_sources
from refresh_assets.lib.sources.discovery import PageUnreadable, find_documents, read_page
from refresh_assets.lib.sources.documents import DOC_TYPES, DiscoveredDocument
from refresh_assets.lib.sources.registry import RegistryError, load_registry
from refresh_assets.lib.sources.store import reset_breaker

# Longer titles are cut in the table so each document stays on one line of a wide terminal.
TITLE_WIDTH = 70


@click.command("discover")
@click.argument("page")
@click.option("--base-url", metavar="URL",
              help="Resolve the page's relative links against URL (for a saved copy of a page).")
@click.option("--json", "as_json", is_flag=True, help="Print the documents as a JSON list.")
@click.option("--type", "doc_type", type=click.Choice(DOC_TYPES), help="Only documents of this type.")
def discover(page: str, base_url: str | None, as_json: bool, doc_type: str | None) -> None:
    """List the ACFRs and CalPERS actuarial valuations linked from PAGE, a saved HTML file or an
    http(s) URL, with their fiscal years and absolute URLs."""
    if base_url is not None and not _is_absolute(base_url):
        raise click.BadParameter(f"{base_url!r} is not an absolute URL (such as https://www.city.gov/finance)",
                                 param_hint="--base-url")
    try:
        content, links_base = read_page(page, base_url)
    except PageUnreadable as exc:
        raise click.ClickException(str(exc)) from None
    documents = find_documents(content, links_base, [doc_type] if doc_type else DOC_TYPES)
    if as_json:
        click.echo(json.dumps([document.as_dict() for document in documents], indent=2))
        return
    if documents:
        click.echo(_table(documents))
    click.echo(f"{len(documents)} document(s) found on {page}")


def _is_absolute(url: str) -> bool:
    parts = urlsplit(url)
    return (parts.scheme in ("http", "https") and bool(parts.netloc)) or parts.scheme == "file"


def _table(documents: list[DiscoveredDocument]) -> str:
    type_width = max(len("doc_type"), *(len(document.doc_type) for document in documents))
    title_width = min(TITLE_WIDTH, max(len("title"), *(len(document.title) for document in documents)))
    lines = [f"{'doc_type':<{type_width}}  year  {'title':<{title_width}}  url"]
    for document in documents:
        title = document.title
        if len(title) > title_width:
            title = title[:title_width - 1] + "…"
        lines.append(f"{document.doc_type:<{type_width}}  {document.fiscal_year}  "
                     f"{title:<{title_width}}  {document.url}")
    return "\n".join(lines)


@click.command()
@click.option("--city", help="Only this city's sources.")
@click.option("--type", "doc_type", type=click.Choice(DOC_TYPES), help="Only sources of this document type.")
@click.option("--reset", "reset_source", metavar="SOURCE",
              help="Close SOURCE's circuit breaker (e.g. vallejo/finance) and check nothing.")
def check(city: str | None, doc_type: str | None, reset_source: str | None) -> None:
    """Check the registry's sources for new documents now (the sensor's check, once),
    whatever their poll interval; a source whose breaker is open is skipped."""
    settings = settings_or_exit()
    try:
        registry = load_registry(settings.sources_file)
        if reset_source:
            registry.source(reset_source)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    with database_errors():
        address = running_server_address(settings)
        if reset_source:
            with warehouse_connection(address) as conn:
                was_checked = reset_breaker(conn, reset_source)
            click.echo(f"{reset_source}: breaker closed" if was_checked
                       else f"{reset_source}: never checked; nothing to reset")
            return
        sources = registry.selected(city, doc_type)
        if not sources:
            raise click.UsageError("no source matches"
                                   + (f" --city {city}" if city else "")
                                   + (f" --type {doc_type}" if doc_type else "")
                                   + f"; the registry is {settings.sources_file}")
        click.echo(f"checking {len(sources)} source(s) from {settings.sources_file}")
        done = 0

        def show(result: CheckResult) -> None:
            nonlocal done
            done += 1
            source = result.source
            if result.outcome == "breaker_open":
                line = (f"skipped: breaker open until {result.breaker.open_until:%Y-%m-%d %H:%M} UTC "
                        f"(refresh-assets check --reset {source.source_id} closes it)")
            elif result.outcome == "deferred":
                line = "deferred: the tick's time budget ran out; it goes first at the next check"
            elif result.outcome == "failed":
                line = f"FAILED: {result.error}"
            elif result.outcome == "changed":
                line = (f"changed: {result.documents_found} document(s) listed, "
                        f"{len(result.new_documents)} new")
            else:
                line = result.outcome.replace("_", " ")
            click.echo(f"[{done}/{len(sources)}] {source.source_id}: {line}")
            for document in result.new_documents:
                click.echo(f"    new {document['doc_type']} {document['fiscal_year']}: "
                           f"{document['title']} <{document['url']}>")

        results = check_sources(address, registry, sources, force=True, on_result=show)
    new = sum(len(r.new_documents) for r in results)
    failed = sum(r.outcome == "failed" for r in results)
    click.echo(f"{len(results)} source(s): {new} new document(s), {failed} failed"
               + ("; operators are emailed by the source_documents sensor (make ui)" if new else ""))
    if failed:
        raise SystemExit(1)
