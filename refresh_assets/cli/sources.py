"""`refresh-assets discover`: the ACFRs and CalPERS valuations a listing page links to."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import click

from refresh_assets.lib.sources.discovery import PageUnreadable, find_documents, read_page
from refresh_assets.lib.sources.documents import DOC_TYPES, DiscoveredDocument

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
