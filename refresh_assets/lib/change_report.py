"""The "what changed" report of a city's refresh: before/after of every indicator, the
fiscal-cliff year's movement, revenue, expenditure and pension changes from the prior year,
and a chart of the projected fund balance, its base path in its scenario band (matplotlib,
embedded as SVG)."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from refresh_assets.lib.isolation import Isolated, compute_isolated
from refresh_assets.lib.projection_bands import percentile_range
from refresh_assets.lib.scoring import INDICATORS, MAX_POINTS


@dataclass
class CityChanges:
    city: str
    fiscal_year: int
    overall_before: float | None
    overall_after: float
    level_before: str | None
    level_after: str
    cliff_before: int | None
    cliff_after: int | None
    severity: str
    indicators: pd.DataFrame
    prior_year: pd.DataFrame
    entry_version: int | None
    # Of the latest projection: its method, and the quantiles its band stands for (None
    # when the method gives the band no probability meaning, as v1.1).
    methodology_version: str | None
    band_quantiles: tuple[float, float] | None
    notes: list[str] = field(default_factory=list)

    @property
    def headline(self) -> str:
        level = (f"{self.level_before} → {self.level_after}" if self.level_before
                 and self.level_before != self.level_after else self.level_after)
        points = (f"{self.overall_before:.2f} → {self.overall_after:.2f}"
                  if self.overall_before is not None else f"{self.overall_after:.2f}")
        cliff = _cliff_text(self.cliff_before, self.cliff_after)
        return f"{self.city} FY{self.fiscal_year}: {level} risk, {points} points; {cliff}"

    @property
    def band(self) -> str:
        """What the band between the pessimistic and optimistic scenarios stands for."""
        if self.band_quantiles is None:
            return f"optimistic–pessimistic (methodology {self.methodology_version})"
        return (f"{percentile_range(*self.band_quantiles)} "
                f"(methodology {self.methodology_version})")


def _cliff_text(before, after) -> str:
    def shown(year):
        return f"FY{year}" if year is not None else "none within ten years"
    if before == after:
        return f"fiscal cliff {shown(after)} (unchanged)"
    return f"fiscal cliff {shown(before)} → {shown(after)}"


def mark(before, after) -> str:
    """improved / worsened / unchanged / new, by points (more points = less risk)."""
    if before is None or pd.isna(before):
        return "new"
    if np.isclose(float(after), float(before)):
        return "unchanged"
    return "improved" if float(after) > float(before) else "worsened"


def indicator_changes(latest: pd.Series, previous: pd.Series | None) -> pd.DataFrame:
    rows = []
    for indicator in INDICATORS:
        before = previous.get(f"{indicator}_points") if previous is not None else None
        after = latest[f"{indicator}_points"]
        rows.append({
            "indicator": indicator.replace("_", " "),
            "max_points": MAX_POINTS[indicator],
            "ratio_before": previous.get(f"{indicator}_ratio") if previous is not None else None,
            "ratio_after": latest[f"{indicator}_ratio"],
            "points_before": before, "points_after": after,
            "band_before": previous.get(f"{indicator}_risk") if previous is not None else None,
            "band_after": latest[f"{indicator}_risk"],
            "change": mark(before, after),
        })
    return pd.DataFrame(rows)


PRIOR_YEAR_MEASURES = {
    "gf_revenues": "General fund revenues",
    "gf_expenditures_and_transfers_out": "General fund expenditures and transfers out",
    "gf_unrestricted_fund_balance": "Unrestricted fund balance",
    "net_pension_liability": "Net pension liability",
    "pension_contribution_required": "Required pension contribution",
    "total_pension_liability": "Total pension liability",
}


def prior_year_changes(validated: pd.DataFrame, fiscal_year: int) -> pd.DataFrame:
    """This year's figures beside last year's, for the measures a reader asks about first."""
    this = validated[validated["fiscal_year"] == fiscal_year]
    last = validated[validated["fiscal_year"] == fiscal_year - 1]
    rows = []
    for column, label in PRIOR_YEAR_MEASURES.items():
        now = float(this[column].iloc[0]) if len(this) and pd.notna(this[column].iloc[0]) else None
        before = float(last[column].iloc[0]) if len(last) and pd.notna(last[column].iloc[0]) else None
        change = (now / before - 1) if now is not None and before not in (None, 0) else None
        rows.append({"measure": label, "before": before, "after": now, "change": change})
    return pd.DataFrame(rows)


def fund_balance_chart(years: pd.DataFrame, city: str, band: str) -> str:
    """Projected unrestricted fund balance, as an inline SVG ("" if none): the base path as a
    line in the band between the pessimistic and optimistic scenarios, shaded and labelled
    `band` (what it stands for, CityChanges.band).

    matplotlib is imported here, not at module import, so loading the Dagster definitions
    does not pay for it. The figure API (no pyplot) keeps no global state between reports,
    fixed margins avoid tight_layout's second drawing pass, and a fixed hash salt makes
    the same data give the same SVG."""
    if years.empty:
        return ""
    import matplotlib
    from matplotlib.figure import Figure

    paths = years.pivot(index="fiscal_year", columns="scenario", values="fund_balance") / 1e6
    with matplotlib.rc_context({"svg.hashsalt": "refresh_assets", "svg.fonttype": "none"}):
        figure = Figure(figsize=(7.5, 3.4))
        figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.15)
        axes = figure.subplots()
        if {"pessimistic", "optimistic"} <= set(paths.columns):
            axes.fill_between(paths.index, paths["pessimistic"], paths["optimistic"],
                              color="#2a9d8f", alpha=0.25, linewidth=0, label=band)
        if "base" in paths.columns:
            axes.plot(paths.index, paths["base"], marker="o", markersize=3, color="#264653",
                      label="base")
        axes.axhline(0, color="#999", linewidth=0.8)
        axes.set_title(f"{city}: projected unrestricted fund balance (USD millions)", fontsize=10)
        axes.set_xlabel("fiscal year")
        axes.legend(fontsize=8, frameon=False)
        axes.grid(alpha=0.3)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prologue to embed it in HTML


def _money(value) -> str:
    return "—" if value is None or pd.isna(value) else f"${value:,.0f}"


def _number(value, digits: int = 2) -> str:
    return "—" if value is None or pd.isna(value) else f"{float(value):,.{digits}f}"


def _percent(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:+.1%}"


TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)


def render_report(changes: CityChanges, chart_svg: str) -> str:
    counts = changes.indicators["change"].value_counts()
    return TEMPLATES.get_template("change_report.html.j2").render(
        c=changes, chart=chart_svg, cliff=_cliff_text(changes.cliff_before, changes.cliff_after),
        indicators=changes.indicators.to_dict("records"),
        prior=changes.prior_year.to_dict("records"),
        counts={k: int(counts.get(k, 0)) for k in ("improved", "worsened", "unchanged", "new")},
        number=_number, money=_money, percent=_percent,
    )


def markdown_summary(changes: CityChanges) -> str:
    moved = changes.indicators[changes.indicators["change"].isin(["improved", "worsened"])]
    lines = [f"**{changes.headline}**", ""]
    lines += [f"- {r.indicator}: {_number(r.points_before)} → {_number(r.points_after)} ({r.change})"
              for r in moved.itertuples()] or ["- no indicator moved"]
    return "\n".join(lines)


def _optional(value):
    return None if value is None or pd.isna(value) else value


def _band_quantiles(summary: pd.Series | None) -> tuple[float, float] | None:
    """The quantiles a projection summary's band stands for; None without a projection or
    when its method gives the band none."""
    if summary is None:
        return None
    low, high = (_optional(summary[c]) for c in ("band_lower_quantile", "band_upper_quantile"))
    return None if low is None or high is None else (float(low), float(high))


def city_changes(city: str, scores: pd.DataFrame, summaries: pd.DataFrame,
                 validated: pd.DataFrame) -> CityChanges | None:
    """Latest scoring and projection of `city` against the ones before (run_rank 1 and 2)."""
    latest_scores = scores[(scores["city"] == city) & (scores["run_rank"] == 1)]
    if latest_scores.empty:
        return None
    fiscal_year = int(latest_scores["fiscal_year"].max())
    latest = latest_scores[latest_scores["fiscal_year"] == fiscal_year].iloc[0]
    before = scores[(scores["city"] == city) & (scores["run_rank"] == 2)
                    & (scores["fiscal_year"] == fiscal_year)]
    previous = before.iloc[0] if len(before) else None
    base = summaries[(summaries["city"] == city) & (summaries["scenario"] == "base")]
    now = base[base["run_rank"] == 1]
    then = base[base["run_rank"] == 2]
    notes = []
    if now.empty:
        notes.append("No projection: no year reports revenues, expenditures and fund balance.")
    projection = now.iloc[0] if len(now) else None
    return CityChanges(
        city=city, fiscal_year=fiscal_year,
        overall_before=float(previous["overall_points"]) if previous is not None else None,
        overall_after=float(latest["overall_points"]),
        level_before=previous["overall_risk"] if previous is not None else None,
        level_after=latest["overall_risk"],
        cliff_before=_optional(then["cliff_year"].iloc[0]) if len(then) else None,
        cliff_after=_optional(now["cliff_year"].iloc[0]) if len(now) else None,
        severity=now["severity"].iloc[0] if len(now) else "none",
        indicators=indicator_changes(latest, previous),
        prior_year=prior_year_changes(validated[validated["city"] == city], fiscal_year),
        entry_version=_optional(latest["entry_version"]),
        methodology_version=projection["methodology_version"] if projection is not None else None,
        band_quantiles=_band_quantiles(projection),
        notes=notes,
    )


def report_inputs_checksum(changes: CityChanges, city_years: pd.DataFrame) -> str:
    """SHA-256 of everything a report shows: equal checksums, equal reports, so an
    unchanged city's report is not rendered again."""
    parts = [repr((changes.city, changes.fiscal_year, changes.overall_before,
                   changes.overall_after, changes.level_before, changes.level_after,
                   changes.cliff_before, changes.cliff_after, changes.severity,
                   changes.entry_version, changes.methodology_version, changes.band_quantiles,
                   changes.notes)),
             changes.indicators.to_csv(index=False), changes.prior_year.to_csv(index=False),
             city_years.sort_values(["scenario", "fiscal_year"]).to_csv(index=False)
             if len(city_years) else ""]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def render_city_report(changes: CityChanges, city_years: pd.DataFrame) -> str:
    return render_report(changes, fund_balance_chart(city_years, changes.city, changes.band))


# Below this many reports, starting worker processes costs more than it saves.
PARALLEL_FROM = 24


def render_reports(work: Sequence[tuple[CityChanges, pd.DataFrame]]) -> list[str]:
    """The HTML of each (changes, years), in order; in worker processes when there are many.
    Workers are spawned, not forked: the caller (a Dagster run) has threads of its own."""
    workers = min(os.cpu_count() or 1, 4)
    if len(work) < PARALLEL_FROM or workers < 2:
        return [render_city_report(changes, years) for changes, years in work]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(render_city_report, *zip(*work, strict=True),
                             chunksize=max(1, len(work) // (workers * 4))))


def write_report(folder: Path, city_key: str, run_id: str, html: str) -> Path:
    """Writes `<folder>/<city>/<run>.html` and makes it the city's `latest.html`."""
    path = folder / city_key / f"{run_id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    (path.parent / "latest.html").write_text(html)
    return path


def render_digest(subject: str, moved: Sequence[tuple[str, str]]) -> str:
    """The email of a run that refreshed several cities: the ones whose level or cliff moved."""
    return TEMPLATES.get_template("digest.html.j2").render(subject=subject, moved=moved)


@dataclass(frozen=True)
class PlannedReport:
    """A city's report to write: what changed, its projection years, and their checksum."""

    city_key: str
    changes: CityChanges
    years: pd.DataFrame
    checksum: str


def plan_reports(cities: dict[str, str], scores: pd.DataFrame, summaries: pd.DataFrame,
                 years: pd.DataFrame, validated: pd.DataFrame) -> Isolated[list[PlannedReport]]:
    """What each city's report shows (`cities`: key -> name). A city whose changes cannot
    be worked out is set aside with its error; a city never scored gets no report."""
    # Split once by city: filtering the whole frames for each city costs O(cities²).
    by_city = [_by_city(frame) for frame in (scores, summaries, years, validated)]

    def plan(group: list[str]) -> list[PlannedReport]:
        planned = []
        for key in group:
            city_scores, city_summaries, city_years, city_validated = (
                parts.get(cities[key], frame.iloc[0:0])
                for parts, frame in zip(by_city, (scores, summaries, years, validated),
                                        strict=True))
            changes = city_changes(cities[key], city_scores, city_summaries, city_validated)
            if changes is None:
                continue
            planned.append(PlannedReport(key, changes, city_years,
                                         report_inputs_checksum(changes, city_years)))
        return planned

    return compute_isolated(sorted(cities), plan)


def _by_city(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return dict(tuple(frame.groupby("city", sort=False))) if len(frame) else {}


def render_isolated(planned: Sequence[PlannedReport]) -> Isolated[dict[str, str]]:
    """City key -> HTML of each planned report; a city whose rendering raises is set aside."""
    by_key = {p.city_key: p for p in planned}
    return compute_isolated(sorted(by_key), lambda group: dict(zip(group, render_reports(
        [(by_key[k].changes, by_key[k].years) for k in group]), strict=True)))


def compose_email(written: Sequence[tuple[CityChanges, Path, str]]) -> tuple[str, str, str]:
    """Subject, HTML and text of a run's one email: the report itself for one city, a digest
    of the cities whose level or cliff year moved for several."""
    if len(written) == 1:
        changes, _, html = written[0]
        return f"What changed: {changes.headline}", html, changes.headline
    moved = [(c.headline, str(p)) for c, p, _ in written
             if c.level_before != c.level_after or c.cliff_before != c.cliff_after]
    subject = f"What changed: {len(written)} cities refreshed, {len(moved)} moved"
    text = subject + "\n" + "\n".join(f"{headline}: {path}" for headline, path in moved)
    return subject, render_digest(subject, moved), text
