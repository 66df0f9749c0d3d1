"""A crash in one city's projection, injected in the real code path: the city is recorded
as failed at that stage and keeps its last projection; the other cities of the run are
refreshed, and the run succeeds."""

import dagster as dg
import psycopg2
import pytest

from refresh_assets.lib import projections as lib_projections
from refresh_assets.lib.cities import city_keys_with_data
from refresh_assets.settings import PROJECT_DIR

pytestmark = pytest.mark.integration


def latest_projection_run(address, city: str) -> str | None:
    with psycopg2.connect(address.libpq_url()) as conn, conn.cursor() as cur:
        cur.execute("select run_id from analytics.projection_summaries where city_key = %s"
                    " order by projected_at desc limit 1", (city,))
        row = cur.fetchone()
    return row[0] if row else None


def test_a_crash_in_one_city_projection_spares_the_others(warehouse, dbt_manifest, monkeypatch):
    from refresh_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        known = instance.get_dynamic_partitions("cities")
        instance.add_dynamic_partitions("cities", [c for c in city_keys_with_data(
            PROJECT_DIR / "entries") if c not in set(known)])
        order = instance.get_dynamic_partitions("cities")
        at = order.index("vallejo")
        window = order[max(at - 3, 0): at + 4]
        tags = {"dagster/asset_partition_range_start": window[0],
                "dagster/asset_partition_range_end": window[-1]}
        job = defs.resolve_job_def("refresh_city")
        assert job.execute_in_process(instance=instance, tags=tags).success
        projected_before = latest_projection_run(warehouse, "vallejo")

        real_project = lib_projections.project

        def project_crashing_on_vallejo(base, *args, **kwargs):
            if "Vallejo" in set(base["city"]):
                raise RuntimeError("injected crash in Vallejo's projection")
            return real_project(base, *args, **kwargs)

        monkeypatch.setattr(lib_projections, "project", project_crashing_on_vallejo)
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        assert result.success

        with psycopg2.connect(warehouse.libpq_url()) as conn, conn.cursor() as cur:
            cur.execute("select city_key, status, stage, error from ops.refresh_operations"
                        " where run_id = %s order by city_key", (result.run_id,))
            outcomes = {key: (status, stage, error) for key, status, stage, error in cur.fetchall()}
        assert set(outcomes) == set(window)
        status, stage, error = outcomes.pop("vallejo")
        assert (status, stage) == ("failure", "projection")
        assert error.startswith("RuntimeError: injected crash in Vallejo's projection (at ")
        assert {status for status, _, _ in outcomes.values()} == {"success"}
        assert latest_projection_run(warehouse, "vallejo") == projected_before

        [vallejo] = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["analytics", "projections"]), asset_partitions=["vallejo"]),
            limit=1).records
        outcome = vallejo.asset_materialization.metadata["city_outcome"].value
        assert outcome.startswith("failed at projection: RuntimeError: injected crash")
        # Vallejo may head the window (it is the first partition when this test runs first).
        other = next(city for city in window if city != "vallejo")
        [neighbour] = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["reports", "change_report"]),
            asset_partitions=[other]), limit=1).records
        assert neighbour.asset_materialization.metadata["city_outcome"].value == "refreshed"
