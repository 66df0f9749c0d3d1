"""What changed in the entries folder since the last look: the logic of the entries sensor.

Both kinds of files count: ACFR entry files (`<city>/<year>.yaml`) and CalPERS valuation
files (`<city>/calpers/<year>-<plan>.yaml`); each is grouped by its top folder, the city.

The cursor maps each file (relative path) to its size, modification time and content
checksum. A file is read and hashed again only when its size or time moved, so a tick
over thousands of unchanged files costs a `stat` each; a file whose content is unchanged
(touched, or saved twice) is not a new version.

A bad file never stops the scan: a file that cannot be read is reported and read again at
the next tick (its last known state stays in the cursor), a file that is not UTF-8 is
reported (its city's run refuses it), and changed files outside a known city's folder are
set apart, so that no partition or run is made for a folder that is no city.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from refresh_assets.lib.cities import city_folder_problem
from refresh_assets.lib.entries import (
    Problem,
    check_entry_files,
    entries_to_frame,
    find_entry_files,
    not_utf8_problem,
    unreadable_problem,
)
from refresh_assets.lib.valuation_entries import find_valuation_files


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    checksum: str


@dataclass
class EntryChanges:
    cursor: str
    changed_by_city: dict[str, list[str]] = field(default_factory=dict)
    states: dict[str, FileState] = field(default_factory=dict)  # of the changed files
    contents: dict[str, bytes] = field(default_factory=dict)  # of the changed files, as read
    deleted: list[str] = field(default_factory=list)
    # Changed files whose folder is not a known city's key ("" for the entries folder itself).
    outside_city_folders: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # unreadable or not UTF-8

    def outside_city_folder_messages(self) -> list[str]:
        """One line per folder that is not a city's, saying what to do with its files."""
        messages = []
        for folder, paths in sorted(self.outside_city_folders.items()):
            if folder:
                messages.append(f"{folder}/ ({len(paths)} changed file(s), e.g. {paths[0]}): "
                                f"{city_folder_problem(folder)}; not ingested, and no city "
                                "partition or run is added")
            else:
                messages.append(f"{', '.join(paths)}: entry files belong in a city folder "
                                "(e.g. vallejo/2019.yaml): move them there; not ingested")
        return messages

    def fingerprint(self, city: str) -> str:
        """Names one city's change: the same save never yields two runs (a tick whose cursor
        was lost sees it again, with the same content and time), while a file saved back to
        an earlier content (a revert) is a new save, with a new time, hence a new run."""
        parts = [f"{p}={self.states[p].checksum}@{self.states[p].mtime_ns}"
                 for p in sorted(self.changed_by_city[city])]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _read_cursor(cursor: str | None) -> dict[str, FileState]:
    if not cursor:
        return {}
    return {path: FileState(*state) for path, state in json.loads(cursor).items()}


def scan_entries(entries_dir: Path, cursor: str | None) -> EntryChanges:
    """New or changed files grouped by city folder (the partition key), those outside a
    city's folder, deleted files, and the files that could not be read or decoded."""
    before = _read_cursor(cursor)
    now: dict[str, FileState] = {}
    changes = EntryChanges(cursor="")
    # ACFR entry files and CalPERS valuation files (`<city>/calpers/...`) alike: both refresh
    # the city of their top folder.
    for path in sorted([*find_entry_files(entries_dir), *find_valuation_files(entries_dir)]):
        relative = path.relative_to(entries_dir).as_posix()
        previous = before.get(relative)
        try:
            stat = path.stat()
            if previous and (previous.size, previous.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                now[relative] = previous
                continue
            content = path.read_bytes()
        except OSError as exc:
            changes.problems.append(unreadable_problem(relative, exc))
            if previous:  # not deleted: its new content is read when it can be
                now[relative] = previous
            continue
        checksum = hashlib.sha256(content).hexdigest()
        now[relative] = FileState(stat.st_size, stat.st_mtime_ns, checksum)
        if previous is None or previous.checksum != checksum:
            try:
                content.decode("utf-8")
            except UnicodeDecodeError as exc:
                changes.problems.append(not_utf8_problem(relative, content, exc))
            folder = relative.split("/", 1)[0] if "/" in relative else ""
            if folder and city_folder_problem(folder) is None:
                changes.changed_by_city.setdefault(folder, []).append(relative)
                changes.states[relative] = now[relative]
                changes.contents[relative] = content
            else:
                changes.outside_city_folders.setdefault(folder, []).append(relative)
    changes.deleted = sorted(set(before) - set(now))
    changes.cursor = json.dumps(
        {p: [s.size, s.mtime_ns, s.checksum] for p, s in sorted(now.items())},
        separators=(",", ":"),
    )
    return changes


def saved_versions(entries_dir: Path, changes: EntryChanges) -> pd.DataFrame:
    """The well-formed entry files among the changes, as entry versions to store when they
    are seen: a file saved again before its city's run reads it keeps both versions. The
    files refused are left to the run, which reports them."""
    changed = {entries_dir / path for paths in changes.changed_by_city.values() for path in paths}
    files = [path for city in sorted(changes.changed_by_city)
             for path in find_entry_files(entries_dir / city) if path in changed]
    # The bytes the scan read: a file saved again since is the next tick's version.
    contents = {entries_dir / path: content for path, content in changes.contents.items()}
    parsed, _ = check_entry_files(files, entries_dir, contents=contents)
    return entries_to_frame(parsed)
