"""Partitions: cities are dynamic, added as their data arrives."""

import dagster as dg

from refresh_assets.lib.cities import CITY_PARTITIONS

city_partitions = dg.DynamicPartitionsDefinition(name=CITY_PARTITIONS)
