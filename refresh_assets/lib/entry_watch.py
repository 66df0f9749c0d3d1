"""What changed in the entries folder since the last look: the logic of the entries sensor.

The cursor maps each file (relative path) to its size, modification time and content
checksum. A file is read and hashed again only when its size or time moved, so a tick
over thousands of unchanged files costs a `stat` each; a file whose content is unchanged
(touched, or saved twice) is not a new version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from refresh_assets.lib.entries import find_entry_files


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    checksum: str


@dataclass
class EntryChanges:
    cursor: str
    changed_by_city: dict[str, list[str]] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)  # of the changed files
    deleted: list[str] = field(default_factory=list)

    def fingerprint(self, city: str) -> str:
        """Names one city's change: the same content never yields two runs."""
        parts = [f"{p}={self.checksums[p]}" for p in sorted(self.changed_by_city[city])]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _read_cursor(cursor: str | None) -> dict[str, FileState]:
    if not cursor:
        return {}
    return {path: FileState(*state) for path, state in json.loads(cursor).items()}


def scan_entries(entries_dir: Path, cursor: str | None) -> EntryChanges:
    """New or changed files grouped by city folder (the partition key), and deleted ones."""
    before = _read_cursor(cursor)
    now: dict[str, FileState] = {}
    changes = EntryChanges(cursor="")
    for path in find_entry_files(entries_dir):
        relative = path.relative_to(entries_dir).as_posix()
        stat = path.stat()
        previous = before.get(relative)
        if previous and (previous.size, previous.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            now[relative] = previous
            continue
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        now[relative] = FileState(stat.st_size, stat.st_mtime_ns, checksum)
        if previous is None or previous.checksum != checksum:
            city = relative.split("/", 1)[0] if "/" in relative else ""
            changes.changed_by_city.setdefault(city, []).append(relative)
            changes.checksums[relative] = checksum
    changes.deleted = sorted(set(before) - set(now))
    changes.cursor = json.dumps(
        {p: [s.size, s.mtime_ns, s.checksum] for p, s in sorted(now.items())},
        separators=(",", ":"),
    )
    return changes
