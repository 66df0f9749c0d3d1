"""Writes a fiscal-inputs CSV of N synthetic cities made from the real data set.

Each of the 477 real cities of `data/ca_city_fiscal_inputs.csv` is copied k times
(k = N / 477, rounded up; the last round is cut so there are exactly N cities):

  - copy 1 is the real city, its rows written exactly as published (same name, same
    text), so a warehouse that already holds the real data set gains nothing from it;
  - copy i >= 2 is named "<city> <i>" ("Vallejo 2", key `vallejo-2`) and every figure
    (population and amounts, prior-year columns included, OPEB funded ratio too) is
    multiplied by one factor per copy, drawn from [0.9, 1.1] by a seeded generator, so
    copies differ from each other but keep their own year-over-year shape and their
    prior-year columns agree with the previous year as in the real data;
  - county and fiscal_year are kept; empty cells stay empty.

The same --cities and --seed give the same file byte for byte. The file keeps the real
data set's name (`ca_city_fiscal_inputs.csv`) in a folder of its own: the bulk import
names each version `<file name>#<city>/<year>`, so the real cities of copy 1 are the
same sources as in the real data set. Usage:

    python benchmarks/make_synthetic_cities.py [--cities 4770] [--seed 8] [--output PATH]

Default output: benchmarks/.work/synthetic-<N>/ca_city_fiscal_inputs.csv (git-ignored).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
REAL_CSV = REPO / "data" / "ca_city_fiscal_inputs.csv"
WORK = REPO / "benchmarks" / ".work"
KEPT = ("city", "county", "fiscal_year")
WHOLE_NUMBERS = ("population",)


def default_output(cities: int) -> Path:
    return WORK / f"synthetic-{cities}" / REAL_CSV.name


def synthetic_frame(real: pd.DataFrame, cities: int, seed: int) -> pd.DataFrame:
    """`real` read as text (dtype=str); returns the rows of `cities` cities, as text."""
    names = list(dict.fromkeys(real["city"]))  # the published order (alphabetical)
    copies = math.ceil(cities / len(names))
    rng = np.random.default_rng(seed)
    factors = rng.uniform(0.9, 1.1, size=(copies, len(names)))  # one per (copy, city)
    position = real["city"].map({name: i for i, name in enumerate(names)}).to_numpy()
    figures = [c for c in real.columns if c not in KEPT]
    numbers = real[figures].apply(pd.to_numeric)
    empty = numbers.isna()

    parts = [real]  # copy 1: the real rows, as published
    for copy in range(2, copies + 1):
        scaled = numbers.mul(factors[copy - 1, position], axis=0)
        text = scaled.round(2).astype(str)
        for column in WHOLE_NUMBERS:
            text[column] = scaled[column].round().astype("Int64").astype(str)
        text = text.mask(empty, "")
        text.insert(0, "city", real["city"] + f" {copy}")
        text.insert(1, "county", real["county"])
        text.insert(2, "fiscal_year", real["fiscal_year"])
        parts.append(text[list(real.columns)])
    frame = pd.concat(parts, ignore_index=True)
    # Exactly `cities` cities: the first ones in (copy, published order).
    kept = frame["city"].drop_duplicates().head(cities)
    return frame[frame["city"].isin(kept)].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=4770,
                        help="number of cities to write (default 4770 = 10 x the 477 real ones)")
    parser.add_argument("--seed", type=int, default=8, help="seed of the scaling factors")
    parser.add_argument("--output", type=Path, default=None,
                        help="CSV to write (default benchmarks/.work/synthetic-N/"
                             "ca_city_fiscal_inputs.csv)")
    args = parser.parse_args()
    if args.cities < 1:
        parser.error("--cities must be at least 1")

    real = pd.read_csv(REAL_CSV, dtype=str, keep_default_na=False)
    frame = synthetic_frame(real, args.cities, args.seed)
    names = frame["city"].drop_duplicates()
    assert len(names) == args.cities, (len(names), args.cities)

    from refresh_assets.lib.cities import city_key  # the partition keys must be unique too
    keys = names.map(city_key)
    assert keys.is_unique, keys[keys.duplicated()].tolist()[:5]

    output = args.output or default_output(args.cities)
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output, index=False)
    real_names = real["city"].nunique()
    print(f"wrote {output}: {args.cities:,} cities ({min(args.cities, real_names)} real, "
          f"{max(0, args.cities - real_names):,} scaled copies, seed {args.seed}), "
          f"{len(frame):,} city-years, {output.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
