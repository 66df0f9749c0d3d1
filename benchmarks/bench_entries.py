"""Measures validation and the entries sensor; results go in benchmarks/RESULTS.md.

  - validation of all 1,841 real city-years (the rules, then the choice of versions);
  - a tick of the entries sensor over 2,000 entry files: the first tick (all new), a tick
    where none changed, and one where one file changed. Both the scan alone (lib) and the
    sensor evaluated as the daemon does (with a Dagster instance) are timed.
Prints the median of several repeats. Usage: python benchmarks/bench_entries.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from refresh_assets.lib.entry_watch import scan_entries
from refresh_assets.lib.fiscal_inputs import read_fiscal_inputs_csv
from refresh_assets.lib.validation import latest_valid_versions, validate_versions
from refresh_assets.settings import DATA_DIR, PROJECT_DIR


def median_seconds(action, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def bench_validation(repeats: int) -> None:
    frame = read_fiscal_inputs_csv(DATA_DIR / "ca_city_fiscal_inputs.csv")
    versions = frame.assign(entry_version=range(1, len(frame) + 1), source_kind="bulk_import",
                            source_path="bulk")

    def validate():
        latest_valid_versions(versions, validate_versions(versions))

    print(f"validation of {len(versions):,} city-years: "
          f"{median_seconds(validate, repeats) * 1000:.0f} ms (median of {repeats})")


def make_entry_files(folder: Path, count: int) -> list[Path]:
    template = yaml.safe_load((PROJECT_DIR / "entries" / "vallejo" / "2019.yaml").read_text())
    paths = []
    for index in range(count):
        city, year = f"city-{index // 4:04d}", 2017 + index % 4
        path = folder / city / f"{year}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({**template, "fiscal_year": year}, sort_keys=False))
        paths.append(path)
    return paths


def bench_sensor(repeats: int, files: int) -> None:
    import dagster as dg

    with tempfile.TemporaryDirectory() as scratch:
        entries = Path(scratch)
        paths = make_entry_files(entries, files)
        cursor = scan_entries(entries, None).cursor
        first = median_seconds(lambda: scan_entries(entries, None), repeats)
        unchanged = median_seconds(lambda: scan_entries(entries, cursor), repeats)

        def one_changed():
            paths[0].write_text(paths[0].read_text() + f"# {time.perf_counter_ns()}\n")
            assert len(scan_entries(entries, cursor).changed_by_city) == 1

        changed = median_seconds(one_changed, repeats)
        print(f"entries scan over {files:,} files: first {first * 1000:.0f} ms, "
              f"none changed {unchanged * 1000:.1f} ms, one changed {changed * 1000:.1f} ms "
              f"(cursor {len(cursor) / 1024:.0f} KiB)")

        os.environ["REFRESH_ENTRIES_DIR"] = str(entries)
        from refresh_assets.defs.resources import SourceFilesResource
        from refresh_assets.defs.sensors import entry_files_sensor

        resources = {"source_files": SourceFilesResource(entries_dir=str(entries))}
        with dg.DagsterInstance.ephemeral() as instance:
            def tick(tick_cursor):
                context = dg.build_sensor_context(instance=instance, cursor=tick_cursor,
                                                  resources=resources)
                return entry_files_sensor(context)

            sensor_cursor = tick(None).cursor
            none = median_seconds(lambda: tick(sensor_cursor), repeats)
            paths[1].write_text(paths[1].read_text() + "# changed\n")
            one = median_seconds(lambda: tick(sensor_cursor), repeats)
            print(f"sensor tick over {files:,} files (ephemeral instance): none changed "
                  f"{none * 1000:.1f} ms, one changed {one * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    bench_validation(args.repeats)
    bench_sensor(args.repeats, args.files)


if __name__ == "__main__":
    main()
