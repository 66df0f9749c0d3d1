"""Measures scoring, projecting and the replay backtest on the real data set; results go in
benchmarks/RESULTS.md. Usage: python benchmarks/bench_scores.py [--repeats 7]"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pandas as pd

from refresh_assets.lib.backtest import metrics, replay
from refresh_assets.lib.fiscal_inputs import read_fiscal_inputs_csv
from refresh_assets.lib.projections import projections_for
from refresh_assets.lib.scoring import score
from refresh_assets.settings import DATA_DIR


def median_ms(action, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    figures = read_fiscal_inputs_csv(DATA_DIR / "ca_city_fiscal_inputs.csv")
    calpers = pd.read_csv(DATA_DIR / "calpers_valuations_2016.csv")
    print(f"machine: {os.cpu_count()} cores; date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"scoring {len(figures):,} city-years: {median_ms(lambda: score(figures), args.repeats):.0f} ms")
    cities = figures["city"].nunique()
    print(f"projecting {cities} cities (history, growth, medians, CalPERS matching, 10 years x 3 "
          f"scenarios): {median_ms(lambda: projections_for(figures, calpers), args.repeats):.0f} ms")
    replay_ms = median_ms(lambda: metrics(replay(figures, calpers, 2018)), args.repeats)
    print(f"replay backtest from FY2018 (projection + metrics): {replay_ms:.0f} ms "
          f"(median of {args.repeats})")


if __name__ == "__main__":
    main()
