"""The entries sensor on the real Dagster instance (the test PostgreSQL's `dagster`
database): a file it cannot read, a file not in UTF-8 and folders that are no city's are
logged with what to do, and never stop the runs of the other cities."""

import logging
import shutil

import dagster as dg
import pytest

from refresh_assets.lib.cities import CITY_PARTITIONS
from refresh_assets.settings import PROJECT_DIR

pytestmark = pytest.mark.integration
NOT_CITY_FOLDERS = ("atlantis", "San Jose", "Vallejo")


@pytest.fixture(scope="module")
def instance(warehouse):
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture(scope="module")
def sensor(dbt_manifest):
    from refresh_assets.defs.sensors import entry_files_sensor

    return entry_files_sensor


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


def unreadable(path):
    # The tests run as root, for whom chmod 000 leaves a file readable; /proc/self/mem is a
    # file (is_file() is true) whose reading from offset 0 fails with an I/O error.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/proc/self/mem")


class Sensor:
    """Ticks the real sensor as the daemon does: its cursor kept, its partitions added."""

    def __init__(self, sensor, instance, entries_dir):
        from refresh_assets.defs.resources import SourceFilesResource, build_resources

        self.sensor, self.instance, self.cursor = sensor, instance, None
        self.resources = {"source_files": SourceFilesResource(entries_dir=str(entries_dir)),
                          "warehouse": build_resources()["warehouse"]}

    def tick(self) -> tuple[dg.SensorResult, list[str], set[str]]:
        """The result, the lines logged, and the city partitions asked for."""
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                          resources=self.resources)
        logged = Lines()
        context.log.addHandler(logged)
        result = self.sensor(context)
        self.cursor = result.cursor
        asked = set()
        for request in result.dynamic_partitions_requests or []:
            asked |= set(request.partition_keys)
            self.instance.add_dynamic_partitions(request.partitions_def_name,
                                                 list(request.partition_keys))
        return result, logged.lines, asked


def test_bad_files_and_folders_are_logged_and_the_other_cities_refreshed(sensor, instance,
                                                                       tmp_path):
    entries = tmp_path / "entries"
    shutil.copytree(PROJECT_DIR / "entries" / "vallejo", entries / "vallejo")
    unreadable(entries / "benicia" / "2019.yaml")
    (entries / "napa").mkdir()
    (entries / "napa" / "2019.yaml").write_bytes(b"city: Napa\nnotes: caf\xe9\n")
    for folder in NOT_CITY_FOLDERS:
        (entries / folder).mkdir()
        shutil.copy(entries / "vallejo" / "2019.yaml", entries / folder / "2019.yaml")
    partitions_before = set(instance.get_dynamic_partitions(CITY_PARTITIONS))
    watch = Sensor(sensor, instance, entries)

    first, logged, asked = watch.tick()
    # Napa's run refuses its file and records why, as for any malformed file.
    assert [r.partition_key for r in first.run_requests] == ["napa", "vallejo"]
    assert asked == {"napa", "vallejo"} - partitions_before
    assert not set(NOT_CITY_FOLDERS) & set(instance.get_dynamic_partitions(CITY_PARTITIONS))
    assert logged == [
        "ERROR: benicia/2019.yaml: error: field (file): readable: cannot read the file "
        "(Input/output error): make it a readable regular file, or move it out of the entries "
        "folder",
        "ERROR: napa/2019.yaml: error: field (file): utf8: not UTF-8 text: byte 0xe9 at byte "
        "offset 21 (line 2) cannot be decoded; save the file as UTF-8 (value: b'notes: "
        "caf\\xe9\\n')",
        "ERROR: San Jose/ (1 changed file(s), e.g. San Jose/2019.yaml): folder 'San Jose' is not "
        "a city key (lower case ascii with hyphens): move its files to san-jose/; not ingested, "
        "and no city partition or run is added",
        "ERROR: Vallejo/ (1 changed file(s), e.g. Vallejo/2019.yaml): folder 'Vallejo' is not a "
        "city key (lower case ascii with hyphens): move its files to vallejo/; not ingested, and "
        "no city partition or run is added",
        "ERROR: atlantis/ (1 changed file(s), e.g. atlantis/2019.yaml): folder 'atlantis' is not "
        "a known city key: move its files to the folder of their city, e.g. adelanto/ (the "
        "closest known key); not ingested, and no city partition or run is added",
    ]

    # The unreadable file is tried again at each tick; the rest, unchanged, is quiet.
    second, logged, asked = watch.tick()
    assert (second.run_requests, asked) == ([], set())
    assert [line.split(": error: ")[0] for line in logged] == ["ERROR: benicia/2019.yaml"]

    # Once it can be read, its city is refreshed.
    (entries / "benicia" / "2019.yaml").unlink()
    shutil.copy(entries / "vallejo" / "2019.yaml", entries / "benicia" / "2019.yaml")
    third, logged, _ = watch.tick()
    assert [r.partition_key for r in third.run_requests] == ["benicia"]
    assert logged == []


def test_each_version_seen_is_stored_at_once_so_a_save_right_after_loses_none(
        sensor, instance, warehouse, tmp_path):
    """Two operators save the same city-year within a second: the run reads the file seconds
    after the tick that saw the first save, so the sensor stores what it saw."""
    import yaml

    from refresh_assets.lib.database import warehouse_connection

    entries = tmp_path / "entries"
    shutil.copytree(PROJECT_DIR / "entries" / "vallejo", entries / "vallejo")
    watch = Sensor(sensor, instance, entries)
    entry = entries / "vallejo" / "2020.yaml"
    document = yaml.safe_load(entry.read_text())

    def save(revenues: int) -> None:
        document["figures"]["gf_revenues"] = revenues
        entry.write_text(yaml.safe_dump(document))

    def stored() -> list[tuple]:
        with warehouse_connection(warehouse) as conn, conn.cursor() as cur:
            cur.execute("select gf_revenues::bigint, entry_version from raw.fiscal_entries"
                        " where city_key = 'vallejo' and fiscal_year = 2020"
                        " and gf_revenues in (123456701, 123456702) order by entry_version")
            return cur.fetchall()

    save(123456701)
    first, _, _ = watch.tick()
    save(123456702)
    second, _, _ = watch.tick()
    third, _, _ = watch.tick()
    assert [r.partition_key for r in (*first.run_requests, *second.run_requests)] == [
        "vallejo", "vallejo"]
    assert third.run_requests == []
    # Both versions, in the order saved, once each (the unchanged third tick adds nothing).
    [(first_revenues, first_version), (later_revenues, later_version)] = stored()
    assert (first_revenues, later_revenues) == (123456701, 123456702)
    assert first_version < later_version
