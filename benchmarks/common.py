"""What every benchmark script shares: a free port for its own servers, and which code
it measured (for the figures written down in RESULTS.md)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def git_state(repo: Path) -> str:
    """The commit measured, and whether the checkout had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              check=False).stdout.strip()
    if Path(git("rev-parse", "--show-toplevel") or "/nonexistent").resolve() != repo:
        return f"{repo} (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no").splitlines()
    return git("rev-parse", "--short", "HEAD") + (
        f" + {len(dirty)} uncommitted change(s)" if dirty else " (clean)")
