"""Per-city exports of the marts BI reads: each city's scores, forecast, validation issues and
status, as CSV or Parquet files with a manifest (docs/EXPORTS.md).

The files are read from the marts, never from the tables behind them: an export holds what
a dashboard shows. The marts keep a city's last valid results when a refresh fails (nothing
new is written for it), so such a city exports those, and says so: `data_status` is
`last_valid`, and its status file names the failure.

Layout, under the folder given (default REFRESH_EXPORTS_DIR):

    <format>/<city_key>/scores.<format>
    <format>/<city_key>/forecast.<format>
    <format>/<city_key>/validation_issues.<format>
    <format>/<city_key>/status.<format>
    <format>/<city_key>/manifest.json     rows, bytes and SHA-256 of each file, written last
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import secrets
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg2 import sql

from refresh_assets.lib.cities import city_key, known_cities
from refresh_assets.lib.database import MARTS_SCHEMA
from refresh_assets.lib.refresh_outcomes import FAILURE

FORMATS = ("parquet", "csv")
# data_status: the latest refresh succeeded / it failed and the files hold the last valid
# results the marts kept / the marts have no score and no forecast for the city.
CURRENT, LAST_VALID, NO_DATA = "current", "last_valid", "none"
SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Dataset:
    """One file per city: the rows of one mart, its columns in the mart's order."""

    name: str
    mart: str
    order_by: tuple[str, ...]
    # fiscal_validation_issues has no city_key: its rows are found by city name.
    by_name: bool = False


SCORES = Dataset("scores", "city_risk_scores", ("city_key", "fiscal_year"))
FORECAST = Dataset("forecast", "city_forecast", ("city_key", "scenario", "fiscal_year"))
VALIDATION_ISSUES = Dataset("validation_issues", "fiscal_validation_issues",
                            ("city", "fiscal_year", "source_path", "field", "rule", "severity"),
                            by_name=True)
STATUS = Dataset("status", "refresh_status", ("city_key",))
DATASETS = (SCORES, FORECAST, VALIDATION_ISSUES, STATUS)
MARTS = tuple(d.mart for d in DATASETS)

# PostgreSQL type OIDs -> Arrow types, so Parquet keeps numbers as numbers and times as
# times. numeric becomes float64 (what BI tools and pandas compute with); any other type
# is exported as its text.
_ARROW_TYPES = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int16(), 23: pa.int32(), 700: pa.float32(),
    701: pa.float64(), 1700: pa.float64(), 25: pa.string(), 1043: pa.string(),
    1082: pa.date32(), 1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}
_NUMERIC_AS_FLOAT = psycopg2.extensions.new_type(
    psycopg2.extensions.DECIMAL.values, "NUMERIC_AS_FLOAT",
    lambda value, cursor: None if value is None else float(value))


class ExportError(ValueError):
    """A request the export cannot serve (an unknown city or format), said in one line."""


@dataclass(frozen=True)
class CityData:
    """One city's rows of every dataset, as read in one snapshot of the marts."""

    city_key: str
    city: str
    tables: dict[str, pa.Table]  # dataset name -> rows, with data_status last
    data_status: str
    failure_stage: str | None
    failure_reason: str | None
    failed_at: datetime | None


@dataclass(frozen=True)
class ExportedCity:
    city_key: str
    data_status: str
    rows: dict[str, int]
    failure_stage: str | None
    failure_reason: str | None
    failed_at: datetime | None


@dataclass
class ExportResult:
    folder: Path  # <out>/<format>
    file_format: str
    cities: list[ExportedCity] = field(default_factory=list)

    @property
    def rows(self) -> dict[str, int]:
        return {d.name: sum(c.rows[d.name] for c in self.cities) for d in DATASETS}

    def with_status(self, status: str) -> list[ExportedCity]:
        return [c for c in self.cities if c.data_status == status]


def city_catalog(conn) -> dict[str, str]:
    """Key -> name of every city in marts.refresh_status (every city with a score or an ops
    record); a city the mart has no name for yet gets its official one."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select city_key, city from {} order by city_key").format(
            sql.Identifier(MARTS_SCHEMA, STATUS.mart)))
        return {key: name or known_cities().get(key, key) for key, name in cur.fetchall()}


def resolve_cities(requested: Sequence[str], catalog: Mapping[str, str]) -> list[str]:
    """The keys of the cities asked for by name or key (`San Luis Obispo`,
    `san-luis-obispo`), in the order given, once each. Raises ExportError naming the first
    unknown one with the closest names."""
    keys = []
    for asked in requested:
        key = city_key(asked)
        if key not in catalog:
            raise ExportError(_unknown_city_message(asked, catalog))
        if key not in keys:
            keys.append(key)
    return keys


def _unknown_city_message(asked: str, catalog: Mapping[str, str]) -> str:
    if city_key(asked) in known_cities():  # a real city, not refreshed into the marts yet
        return (f"city {asked!r} has no data in the marts yet: refresh it first "
                "(`refresh-assets materialize`)")
    by_lower = {name.lower(): key for key, name in catalog.items()}
    near = difflib.get_close_matches(asked.lower(), by_lower, n=3, cutoff=0.6)
    near_keys = list(dict.fromkeys(by_lower[n] for n in near))
    if not near_keys:  # a key with a typo in it: "san-luis-obspo"
        near_keys = difflib.get_close_matches(city_key(asked), list(catalog), n=3, cutoff=0.6)
    if near_keys:
        return (f"unknown city {asked!r}: did you mean "
                + " or ".join(f"{catalog[k]} ({k})" for k in near_keys) + "?")
    return (f"unknown city {asked!r}: give a name or key of marts.refresh_status "
            "(e.g. 'San Luis Obispo' or san-luis-obispo)")


def read_marts(conn, keys: Sequence[str]) -> list[CityData]:
    """Every dataset of these cities, one query per dataset, all in one snapshot (so a
    city's scores, forecast and status agree even while a refresh commits): call it first in
    its transaction. A city without rows in a dataset gets an empty table of its columns."""
    keys = sorted(set(keys))
    with conn.cursor() as cur:
        cur.execute("set transaction isolation level repeatable read, read only")
        psycopg2.extensions.register_type(_NUMERIC_AS_FLOAT, cur)
        read = {STATUS.name: _query(cur, STATUS, keys)}
        statuses = read[STATUS.name]
        # The name the marts give the city, else its official one (no score yet).
        names = {k: next((n for n in statuses.of(k).column("city").to_pylist() if n), None)
                 or known_cities().get(k, k) for k in keys}
        for dataset in (SCORES, FORECAST, VALIDATION_ISSUES):
            read[dataset.name] = _query(cur, dataset, [names[k] for k in keys]
                                        if dataset.by_name else keys)
    return [_city_data(key, names[key], read) for key in keys]


@dataclass(frozen=True)
class _Rows:
    """A dataset's rows for every city read, in one table (building one small table per
    city and column costs seconds at 477 cities), and where each city's rows are."""

    table: pa.Table
    by_city: dict[str, list[int]]

    def of(self, key: str) -> pa.Table:
        return self.table.take(pa.array(self.by_city.get(key, []), pa.int64()))


def _query(cur, dataset: Dataset, wanted: list[str]) -> _Rows:
    """The dataset's rows for these city keys (or names), typed as the mart's columns."""
    column = "city" if dataset.by_name else "city_key"
    cur.execute(sql.SQL("select * from {} where {} = any(%s) order by {}").format(
        sql.Identifier(MARTS_SCHEMA, dataset.mart), sql.Identifier(column),
        sql.SQL(", ").join(sql.Identifier(c) for c in dataset.order_by)), (wanted,))
    schema = pa.schema([(d.name, _ARROW_TYPES.get(d.type_code, pa.string()))
                        for d in cur.description])
    rows = cur.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    table = pa.table([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)],
                     schema=schema)
    by_city: dict[str, list[int]] = defaultdict(list)
    for at, value in enumerate(table.column(column).to_pylist()):
        by_city[city_key(value) if dataset.by_name else value].append(at)
    return _Rows(table, by_city)


def data_status(last_refresh_status: str | None, validation_errors: int, has_data: bool) -> str:
    """`none` without a score or a forecast; `last_valid` when the latest refresh failed or
    the current validation has an error (the marts then hold the last valid results);
    else `current`."""
    if not has_data:
        return NO_DATA
    if last_refresh_status == FAILURE or validation_errors:
        return LAST_VALID
    return CURRENT


def _city_data(key: str, name: str, read: Mapping[str, _Rows]) -> CityData:
    tables = {d.name: read[d.name].of(key) for d in DATASETS}
    if not tables[STATUS.name].num_rows:  # a partition the marts know nothing of
        schema = tables[STATUS.name].schema
        tables[STATUS.name] = pa.table(
            [pa.array([key if f.name == "city_key" else name if f.name == "city" else None],
                      f.type) for f in schema], schema=schema)
    severities = tables[VALIDATION_ISSUES.name].column("severity").to_pylist()
    counts = {s: severities.count(s) for s in SEVERITIES}
    [status] = tables[STATUS.name].to_pylist()
    state = data_status(status["last_refresh_status"], counts["error"],
                        bool(tables[SCORES.name].num_rows or tables[FORECAST.name].num_rows))
    for dataset in DATASETS:
        table = tables[dataset.name]
        tables[dataset.name] = table.append_column(
            "data_status", pa.repeat(pa.scalar(state, pa.string()), table.num_rows))
    # The status file also counts the city's current validation issues by severity.
    for severity in SEVERITIES:
        tables[STATUS.name] = tables[STATUS.name].append_column(
            f"validation_{severity}s", pa.array([counts[severity]], pa.int64()))
    failed = state == LAST_VALID
    return CityData(key, name, tables, state,
                    failure_stage=status["last_failure_stage"] if failed else None,
                    failure_reason=status["last_failure_reason"] if failed else None,
                    failed_at=status["last_failure_at"] if failed else None)


def write_exports(cities: Sequence[CityData], out: Path, file_format: str,
                  on_city: Callable[[str], None] | None = None) -> ExportResult:
    """Writes each city's files under `out/<format>/<city_key>/`, each replaced atomically
    (a reader sees the old file or the new one, never a part), then its manifest.
    `on_city` is called with each city's key once its files are written."""
    if file_format not in FORMATS:
        raise ExportError(f"unknown export format {file_format!r}: use one of {', '.join(FORMATS)}")
    result = ExportResult(out / file_format, file_format)
    exported_at = datetime.now(UTC).isoformat(timespec="seconds")
    for city in cities:
        folder = result.folder / city.city_key
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for dataset in DATASETS:
            table = city.tables[dataset.name]
            content = _serialise(table, file_format)
            file_name = f"{dataset.name}.{file_format}"
            _replace(folder / file_name, content)
            files.append({"dataset": dataset.name, "file": file_name,
                          "mart": f"{MARTS_SCHEMA}.{dataset.mart}", "rows": table.num_rows,
                          "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()})
        manifest = {"city_key": city.city_key, "city": city.city, "format": file_format,
                    "exported_at": exported_at, "data_status": city.data_status,
                    "failure_stage": city.failure_stage, "failure_reason": city.failure_reason,
                    "failed_at": city.failed_at.isoformat() if city.failed_at else None,
                    "files": files}
        _replace(folder / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
        result.cities.append(ExportedCity(
            city.city_key, city.data_status, {d.name: city.tables[d.name].num_rows for d in DATASETS},
            city.failure_stage, city.failure_reason, city.failed_at))
        if on_city is not None:
            on_city(city.city_key)
    return result


def _serialise(table: pa.Table, file_format: str) -> bytes:
    buffer = io.BytesIO()
    if file_format == "parquet":
        # Without the Arrow schema pyarrow stores beside Parquet's own: it restates the types,
        # which read back the same, and is a quarter of a city's small file.
        pq.write_table(table, buffer, store_schema=False)
    else:
        # Null is an empty field, an empty text a quoted "": pyarrow's reader tells them apart.
        pa_csv.write_csv(table, buffer)
    return buffer.getvalue()


def _replace(path: Path, content: bytes) -> None:
    """Writes beside the file, then renames over it. Not fsynced: an export can be taken
    again, and an fsync per file would cost seconds over thousands of files."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    # os.open honours the umask, as the file it replaces was created (a BI reader's access).
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
