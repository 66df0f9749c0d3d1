"""Tags on Dagster runs, named once: the run queue limits `CITY` to one run per value
(dagster.yaml), and the refresh records and the CLI read the others."""

CITY = "refresh/city"
TRIGGER = "refresh/trigger"  # sensor, schedule or manual
REQUESTED_BY = "refresh/requested_by"
CHANGED_FILES = "refresh/changed_files"
# Dagster's own: the daemon's run monitoring fails a run still going after this many seconds,
# which is how a run whose process died leaves the queue (dagster.yaml, run_monitoring).
MAX_RUNTIME = "dagster/max_runtime"
# A city's refresh takes seconds, a city's source documents a minute at most: fifteen minutes
# is a run that will not end by itself.
ONE_CITY_MAX_RUNTIME = {MAX_RUNTIME: "900"}


def refresh_trigger(tags: dict[str, str]) -> str:
    """What started a run: our own tag if set, else Dagster's sensor or schedule tag."""
    if TRIGGER in tags:
        return tags[TRIGGER]
    if "dagster/sensor_name" in tags:
        return "sensor"
    if "dagster/schedule_name" in tags:
        return "schedule"
    return "manual"
