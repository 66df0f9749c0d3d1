"""Partitions: cities are dynamic, added as their data arrives."""

import dagster as dg

from refresh_assets.lib.cities import CITY_PARTITIONS

city_partitions = dg.DynamicPartitionsDefinition(name=CITY_PARTITIONS)


def run_city_keys(run: dg.DagsterRun, instance: dg.DagsterInstance) -> list[str]:
    """The cities a run refreshes: its partition, or every city of its partition range
    (a full refresh or a single-run backfill); none for a run without city partitions."""
    tags = run.tags
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if start is None or end is None:
        return []
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        return list(city_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
