"""Tags on Dagster runs, named once: the run queue limits `CITY` to one run per value
(dagster.yaml), and the refresh records and the CLI read the others."""

CITY = "refresh/city"
TRIGGER = "refresh/trigger"  # sensor, schedule or manual
REQUESTED_BY = "refresh/requested_by"
CHANGED_FILES = "refresh/changed_files"


def refresh_trigger(tags: dict[str, str]) -> str:
    """What started a run: our own tag if set, else Dagster's sensor or schedule tag."""
    if TRIGGER in tags:
        return tags[TRIGGER]
    if "dagster/sensor_name" in tags:
        return "sensor"
    if "dagster/schedule_name" in tags:
        return "schedule"
    return "manual"
