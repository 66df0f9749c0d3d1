"""Tags on Dagster runs, named once: the run queue limits `CITY` to one run per value
(dagster.yaml), and the refresh records and the CLI read the others."""

CITY = "refresh/city"
TRIGGER = "refresh/trigger"  # sensor, schedule or manual
REQUESTED_BY = "refresh/requested_by"
CHANGED_FILES = "refresh/changed_files"
