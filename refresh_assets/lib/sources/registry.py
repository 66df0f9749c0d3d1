"""The source registry: which pages are checked for which documents, how politely, how often.

`sources.yaml` at the project's root (or the file REFRESH_SOURCES_FILE names) lists, per
city, its finance pages and its CalPERS plans' valuation listings; the hosts documents may
be fetched from; and how checks behave. Adding a city is one entry under `cities:`:

    cities:
      Vallejo:
        finance_pages:
          - https://www.cityofvallejo.net/city_hall/departments___divisions/finance
        calpers_plans:
          Miscellaneous: https://www.calpers.ca.gov/...

Each page becomes a `Source` with a stable id (`vallejo/finance`, `vallejo/calpers-miscellaneous`)
that the CLI, the ops tables and the UI use. The file is checked whole when it is loaded:
every problem names the file, the field and the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from refresh_assets.lib.cities import city_key, closest_city, known_cities
from refresh_assets.lib.sources.documents import ACFR, CALPERS_VALUATION, DOC_TYPES


class RegistryError(ValueError):
    """The registry cannot be used; the message lists every problem, one per line."""


class Cadence(BaseModel):
    """The days a source must be checked at least once (the operators' guide's minimum)."""

    model_config = ConfigDict(extra="forbid")
    months: list[int] = Field(min_length=1)
    day: int = Field(ge=1, le=28)

    @field_validator("months")
    @classmethod
    def months_of_the_year(cls, months: list[int]) -> list[int]:
        if any(not 1 <= m <= 12 for m in months):
            raise ValueError("months are 1 to 12")
        return sorted(set(months))


class Breaker(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failures: int = Field(default=5, ge=1, description="Consecutive failures that open it.")
    cooldown_minutes: float = Field(default=60, gt=0,
                                    description="First cool-down; doubles at each re-opening.")


class Downloads(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    max_megabytes: float = Field(default=100, gt=0)
    content_types: list[str] = Field(default_factory=lambda: ["application/pdf"], min_length=1)


class Checks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_agent: str = Field(min_length=8, description="Names the project and a contact.")
    poll_every_minutes: float = Field(default=360, ge=0)
    connect_timeout_seconds: float = Field(default=5, gt=0)
    read_timeout_seconds: float = Field(default=20, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_seconds: float = Field(default=0.5, ge=0)
    min_interval_seconds: float = Field(default=2, ge=0, description="Between two requests to a host.")
    max_page_megabytes: float = Field(default=5, gt=0)
    parallel_hosts: int = Field(default=8, ge=1, le=64)
    tick_budget_seconds: float = Field(default=40, gt=0,
                                       description="No check starts later in a tick (sensor limit 60 s).")
    oldest_fiscal_year: int = Field(default=2017, ge=1990,
                                    description="Older documents are recorded, not notified.")
    breaker: Breaker = Field(default_factory=Breaker)
    downloads: Downloads = Field(default_factory=Downloads)


class Host(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_interval_seconds: float | None = Field(default=None, ge=0)


class FinancePage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    documents: list[str] = Field(default_factory=lambda: [ACFR], min_length=1)

    @field_validator("documents")
    @classmethod
    def known_types(cls, documents: list[str]) -> list[str]:
        unknown = [d for d in documents if d not in DOC_TYPES]
        if unknown:
            raise ValueError(f"unknown document type(s) {', '.join(unknown)}; "
                             f"known: {', '.join(DOC_TYPES)}")
        return documents


class CitySources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    finance_pages: list[HttpUrl | FinancePage] = Field(default_factory=list)
    calpers_plans: dict[str, HttpUrl] = Field(default_factory=dict)


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checks: Checks
    cadence: dict[str, Cadence]
    hosts: dict[str, Host | None] = Field(min_length=1)
    cities: dict[str, CitySources]


@dataclass(frozen=True)
class Source:
    """One page to check: whose, for which document types, at which URL."""

    source_id: str
    city: str
    city_key: str
    url: str
    doc_types: tuple[str, ...]
    plan: str | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


@dataclass(frozen=True)
class Registry:
    path: Path
    checks: Checks
    cadence: dict[str, Cadence]
    host_intervals: dict[str, float]
    sources: tuple[Source, ...]

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(self.host_intervals)

    def source(self, source_id: str) -> Source:
        for source in self.sources:
            if source.source_id == source_id:
                return source
        raise RegistryError(f"{self.path}: no source {source_id!r}; known: "
                            + ", ".join(s.source_id for s in self.sources))

    def selected(self, city: str | None = None, doc_type: str | None = None) -> list[Source]:
        """The sources of a city (any spelling of its name) and/or of a document type."""
        wanted_key = city_key(city) if city else None
        return [s for s in self.sources
                if (wanted_key is None or s.city_key == wanted_key)
                and (doc_type is None or doc_type in s.doc_types)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _problems(error: ValidationError, path: Path) -> list[str]:
    lines = []
    for detail in error.errors():
        field = ".".join(str(part) for part in detail["loc"]) or "(file)"
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            message = "unknown field; remove it or correct its name"
        lines.append(f"{path}: field {field}: {detail['type']}: {message}")
    return lines


def load_registry(path: Path) -> Registry:
    """Reads and checks the registry.

    Raises:
        RegistryError: every problem found, one per line: YAML syntax, unknown or missing
            fields, an unknown city, a page on a host not listed under `hosts:`, a document
            type without a cadence, two sources with one id.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the source registry ({exc.strerror or exc}); "
                            "set REFRESH_SOURCES_FILE to a readable file") from None
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    try:
        parsed = RegistryFile.model_validate(data)
    except ValidationError as exc:
        raise RegistryError("\n".join(_problems(exc, path))) from None

    problems: list[str] = []
    hosts = {name.lower(): (host.min_interval_seconds if host and host.min_interval_seconds is not None
                            else parsed.checks.min_interval_seconds)
             for name, host in parsed.hosts.items()}
    problems += [f"{path}: field cadence.{name}: known_type: not a document type "
                 f"(known: {', '.join(DOC_TYPES)})" for name in parsed.cadence if name not in DOC_TYPES]
    problems += [f"{path}: field cadence: required: no cadence for {doc_type}"
                 for doc_type in DOC_TYPES if doc_type not in parsed.cadence]
    sources: list[Source] = []
    for name, pages in parsed.cities.items():
        key = city_key(name)
        if key not in known_cities():
            near = closest_city(name)
            problems.append(f"{path}: field cities.{name}: known_city: no California city of that "
                            "name" + (f"; did you mean {near}?" if near else ""))
            continue
        official = known_cities()[key]
        for n, page in enumerate(pages.finance_pages, start=1):
            page = page if isinstance(page, FinancePage) else FinancePage(url=page)
            suffix = "" if n == 1 else f"-{n}"
            sources.append(Source(f"{key}/finance{suffix}", official, key, str(page.url),
                                  tuple(page.documents)))
        for plan, url in pages.calpers_plans.items():
            sources.append(Source(f"{key}/calpers-{_slug(plan)}", official, key, str(url),
                                  (CALPERS_VALUATION,), plan=plan))
    for source in sources:
        if source.host not in hosts:
            problems.append(f"{path}: field cities.{source.city}: allowed_host: {source.url} is on "
                            f"{source.host}, which is not listed under hosts:; add it there")
    seen: set[str] = set()
    for source in sources:
        if source.source_id in seen:
            problems.append(f"{path}: field cities.{source.city}: unique_id: two sources are named "
                            f"{source.source_id}; give the city each page once")
        seen.add(source.source_id)
    if problems:
        raise RegistryError("\n".join(problems))
    return Registry(path, parsed.checks, parsed.cadence, hosts, tuple(sources))


def latest_cadence_day(cadence: Cadence, now: datetime) -> datetime:
    """The most recent cadence day (00:00 UTC) at or before `now`."""
    for months_back in range(0, 13):
        year, month = divmod(now.month - 1 - months_back, 12)
        candidate = date(now.year + year, month + 1, cadence.day)
        moment = datetime(candidate.year, candidate.month, candidate.day, tzinfo=UTC)
        if candidate.month in cadence.months and moment <= now:
            return moment
    raise AssertionError("a cadence has at least one month a year")


def is_due(source: Source, registry: Registry, last_checked_at: datetime | None, now: datetime) -> bool:
    """Due when never checked, when the poll interval has passed, or when a cadence day of
    one of its document types came since its last check (the guide's minimum)."""
    if last_checked_at is None:
        return True
    if now - last_checked_at >= timedelta(minutes=registry.checks.poll_every_minutes):
        return True
    return any(last_checked_at < latest_cadence_day(registry.cadence[t], now) for t in source.doc_types)
