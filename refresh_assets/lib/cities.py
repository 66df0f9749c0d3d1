"""California cities: the known names, their keys, and suggestions for near misses."""

from __future__ import annotations

import difflib
import re
import unicodedata
from functools import cache
from pathlib import Path

import pandas as pd

from refresh_assets.settings import DATA_DIR

CITY_LIST = DATA_DIR / "ca_city_fiscal_inputs.csv"
# The Dagster dynamic partitions of cities; keys are `city_key(name)`.
CITY_PARTITIONS = "cities"


def city_key(name: str) -> str:
    """The city's key: its Dagster partition and its entries folder (`San Luis Obispo` ->
    `san-luis-obispo`, `La Cañada Flintridge` -> `la-canada-flintridge`)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


@cache
def known_cities(source: Path = CITY_LIST) -> dict[str, str]:
    """Key -> official name for every city in the shipped data set (477 cities)."""
    names = pd.read_csv(source, usecols=["city"], dtype=str)["city"].drop_duplicates()
    return {city_key(name): name for name in names}


def closest_city(name: str, source: Path = CITY_LIST) -> str | None:
    """The known city whose name is nearest to `name`, if any is reasonably near."""
    cities = known_cities(source)
    by_lower = {official.lower(): official for official in cities.values()}
    match = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def city_folder_problem(folder: str) -> str | None:
    """Why a folder under entries/ cannot hold entry files (its name is not a known city
    key), as one line saying what to do; None when it is a city's folder."""
    if folder in known_cities():
        return None
    near = closest_city(folder.replace("-", " "))
    if near and city_key(near) == city_key(folder):
        return (f"folder {folder!r} is not a city key (lower case ascii with hyphens): "
                f"move its files to {city_key(near)}/")
    example = (f"e.g. {city_key(near)}/ (the closest known key)" if near else
               "<city-key>/ (the city's name in lower case with hyphens: san-luis-obispo/)")
    return (f"folder {folder!r} is not a known city key: move its files to the folder of "
            f"their city, {example}")


def city_keys_with_data(entries_dir: Path, source: Path = CITY_LIST) -> list[str]:
    """Every city the pipeline should know: the data set's and each entries folder's. A
    folder that is not a known city's key is skipped: it can hold no valid entry, and
    `refresh-assets validate` and the entries sensor report it."""
    folders = {p.name for p in entries_dir.iterdir() if p.is_dir()} if entries_dir.is_dir() else set()
    return sorted(set(known_cities(source)) | {f for f in folders if f in known_cities()})
