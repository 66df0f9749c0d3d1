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
from refresh_assets.lib.projection_calibration import calibrate
from refresh_assets.lib.projections import (
    base_years,
    build_history,
    projections_for,
    revenue_growth,
    statewide_medians,
    statewide_priors,
)
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

    def medians_only():  # v1.1's statewide step, for the ratio
        base = base_years(figures)
        return statewide_medians(base, revenue_growth(build_history(figures), base))

    medians_ms = median_ms(medians_only, args.repeats)
    priors_ms = median_ms(lambda: statewide_priors(figures, calpers), args.repeats)
    print(f"statewide step, all {cities} cities: m(t0) alone {medians_ms:.0f} ms; v1.2's priors "
          f"(m(t0) + base paths + variances) {priors_ms:.0f} ms (x{priors_ms / medians_ms:.1f})")
    for methodology in ("v1.1", "v1.2"):
        ms = median_ms(lambda m=methodology: projections_for(figures, calpers, methodology=m),
                       args.repeats)
        print(f"projecting {cities} cities under {methodology} (history, growth, priors, CalPERS "
              f"matching, 10 years x 3 scenarios): {ms:.0f} ms")
        replay_ms = median_ms(lambda m=methodology: metrics(replay(figures, calpers, 2018, m)),
                              args.repeats)
        print(f"replay backtest from FY2018 under {methodology} (projection + metrics): "
              f"{replay_ms:.0f} ms (median of {args.repeats})")
    started = time.perf_counter()
    calibrate(figures, calpers)
    print(f"calibration (5 county folds + all cities, 2 replays): "
          f"{time.perf_counter() - started:.1f} s (once)")


if __name__ == "__main__":
    main()
