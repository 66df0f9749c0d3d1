"""Polite HTTP for source-document checks: city finance pages and CalPERS listings are checked
many times a day, so every check must be cheap when nothing changed (conditional GET, checksum)
and gentle on the servers (allowed hosts only, robots.txt, per-host spacing, bounded retries,
timeouts and size caps). Pure library: the sensor and the CLI decide what to do with the results.

Retries are urllib3's `Retry` on requests' `HTTPAdapter`; redirects are followed here, hop by
hop, so that every hop is checked against the allowed hosts and robots.txt and waits its turn.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mimetypes
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Literal
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

FetchErrorKind = Literal[
    "host_not_allowed", "robots_disallowed", "timeout", "connection", "http_status",
    "too_large", "content_type", "redirect_off_site", "too_many_redirects", "storage",
]

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# RFC 9309 §2.5: crawlers must parse at least 500 KiB of a robots.txt; the rest may be ignored.
ROBOTS_MAX_BYTES = 500 * 1024
# RFC 9309 §2.4: a cached robots.txt should not be used for more than 24 hours.
ROBOTS_MAX_AGE_SECONDS = 24 * 3600
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """How politely and how far the fetcher may go; one policy per fetcher."""

    user_agent: str
    allowed_hosts: frozenset[str]
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    min_interval_seconds: float = 1.0
    host_intervals: Mapping[str, float] = field(default_factory=dict)
    retries: int = 3
    backoff_seconds: float = 0.5
    # A Retry-After longer than this is shortened to it, so one check cannot hang for hours.
    max_retry_after_seconds: float = 30.0
    max_page_bytes: int = 5_000_000
    max_document_bytes: int = 100_000_000
    page_content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    document_content_types: tuple[str, ...] = ("application/pdf",)
    max_redirects: int = 5

    def __post_init__(self) -> None:
        # Hostnames in URLs compare case-insensitively; a "City.gov" entry must still match.
        object.__setattr__(self, "allowed_hosts", frozenset(h.lower() for h in self.allowed_hosts))
        object.__setattr__(self, "host_intervals",
                           MappingProxyType({h.lower(): s for h, s in self.host_intervals.items()}))

    def interval_for(self, host: str) -> float:
        return self.host_intervals.get(host, self.min_interval_seconds)


@dataclass(frozen=True)
class PageResult:
    """One check of a page. `sha256` lets the caller spot a change when the server sends no
    validators; `etag`/`last_modified` are what to send next time."""

    url: str
    final_url: str
    status: int
    not_modified: bool
    body: bytes | None
    etag: str | None
    last_modified: str | None
    sha256: str | None
    bytes_received: int
    duration_seconds: float  # the whole call, waits for the host's turn included
    content_type: str | None  # the header as sent (its charset helps decoding)


@dataclass(frozen=True)
class StoredDocument:
    """A downloaded document, stored under its checksum so the same content is kept once."""

    url: str
    sha256: str
    path: Path
    bytes: int
    content_type: str
    final_url: str


class FetchError(Exception):
    """A check that failed; str(error) is one line saying what happened and what to do.
    `transient` tells the caller whether trying again later may help."""

    def __init__(self, url: str, kind: FetchErrorKind, message: str, *, status: int | None = None,
                 transient: bool = False, bytes_received: int = 0) -> None:
        super().__init__(" ".join(message.split()))
        self.url = url
        self.kind = kind
        self.status = status
        self.transient = transient
        self.bytes_received = bytes_received


class _PacedRetry(Retry):
    """urllib3's Retry, with the backoff the policy describes (b, 2b, 4b ... where urllib3 waits
    nothing before the first retry) and each retry also waiting for its host's turn."""

    pace: Callable[[str], None] | None = None
    host: str | None = None

    def new(self, **kw) -> _PacedRetry:
        retry = super().new(**kw)
        retry.pace, retry.host = self.pace, self.host
        return retry

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None) -> _PacedRetry:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if _pool is not None:
            retry.host = _pool.host
        return retry

    def get_backoff_time(self) -> float:
        if not self.history:
            return 0.0
        return min(self.backoff_max, self.backoff_factor * 2 ** (len(self.history) - 1))

    def sleep(self, response=None) -> None:
        super().sleep(response)
        if self.pace is not None and self.host is not None:
            self.pace(self.host)


class _HostPacer:
    """Spaces the starts of requests to one host; threads waiting on different hosts never wait
    for each other (a slot is reserved under the lock, the sleep happens outside it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_start: dict[str, float] = {}

    def wait(self, host: str, interval: float) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._last_start.get(host, float("-inf")) + interval)
            self._last_start[host] = start
        if start > now:
            time.sleep(start - now)


class PoliteFetcher:
    """Fetches pages and documents under a `FetchPolicy`. One fetcher may be shared by threads
    checking different hosts: the rate limit and the robots.txt cache are per host and locked.
    A session passed in gets the fetcher's retrying adapter mounted and is left open by close()."""

    def __init__(self, policy: FetchPolicy, session: requests.Session | None = None) -> None:
        self.policy = policy
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        retry = _PacedRetry(
            total=policy.retries,
            allowed_methods=frozenset({"GET", "HEAD"}),
            status_forcelist=TRANSIENT_STATUSES,
            backoff_factor=policy.backoff_seconds,
            respect_retry_after_header=True,
            retry_after_max=policy.max_retry_after_seconds,
            # The last 5xx comes back as a response, so its status can be reported.
            raise_on_status=False,
        )
        retry.pace = self._wait_turn
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._pacer = _HostPacer()
        self._lock = threading.Lock()
        self._robots: dict[str, tuple[RobotFileParser, float]] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._robots_intervals: dict[str, float] = {}

    def __enter__(self) -> PoliteFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def fetch_page(self, url: str, *, etag: str | None = None,
                   last_modified: str | None = None) -> PageResult:
        """GETs a listing page; with the validators of the last check, an unchanged page costs a 304."""
        started = time.monotonic()
        headers = {"Accept": _accept(self.policy.page_content_types)}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        with self._get(url, headers) as response:
            if response.status_code == 304:
                return PageResult(
                    url=url, final_url=response.url, status=304, not_modified=True, body=None,
                    etag=response.headers.get("ETag", etag),
                    last_modified=response.headers.get("Last-Modified", last_modified),
                    sha256=None, bytes_received=0, duration_seconds=time.monotonic() - started,
                    content_type=response.headers.get("Content-Type"))
            self._require_success(url, response)
            self._require_type(url, response, self.policy.page_content_types, "page")
            body = bytearray()
            size, sha256 = self._read(url, response, self.policy.max_page_bytes, "page", body.extend)
            return PageResult(
                url=url, final_url=response.url, status=response.status_code, not_modified=False,
                body=bytes(body), etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"), sha256=sha256,
                bytes_received=size, duration_seconds=time.monotonic() - started,
                content_type=response.headers.get("Content-Type"))

    def download(self, url: str, documents_dir: Path) -> StoredDocument:
        """Streams a document to `documents_dir/sha256/ab/<sha256>.pdf` (temp file, then rename).
        The folder is prepared first, so a document that cannot be stored is not downloaded."""
        folder = documents_dir / "sha256"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=folder, prefix=".partial-")
        except OSError as error:
            raise _storage_error(url, documents_dir, error) from error
        temp = Path(temp_name)
        handle = os.fdopen(fd, "wb")
        headers = {"Accept": _accept(self.policy.document_content_types)}
        try:
            with self._get(url, headers) as response:
                self._require_success(url, response)
                media_type = self._require_type(url, response, self.policy.document_content_types,
                                                "document")
                size, sha256 = self._read(url, response, self.policy.max_document_bytes, "document",
                                          _storage_writer(url, documents_dir, handle))
                final_url = response.url
                try:
                    handle.flush()
                    os.fsync(handle.fileno())
                    handle.close()
                except OSError as error:
                    raise _storage_error(url, documents_dir, error) from error
            target = folder / sha256[:2] / f"{sha256}{mimetypes.guess_extension(media_type) or ''}"
            try:
                target.parent.mkdir(exist_ok=True)
                if not target.exists():
                    # Documents are public; the temp file's 0600 would hide them from other users.
                    temp.chmod(0o644)
                    os.replace(temp, target)
            except OSError as error:
                raise _storage_error(url, documents_dir, error) from error
        finally:
            # A write that failed (a full disk) leaves bytes in the file's buffer, and closing
            # it fails on them again: the first error is the one reported, the file goes anyway.
            with contextlib.suppress(OSError):
                handle.close()
            temp.unlink(missing_ok=True)
        return StoredDocument(url=url, sha256=sha256, path=target, bytes=size, content_type=media_type,
                              final_url=final_url)

    # -- requests, hop by hop ---------------------------------------------------------------

    def _get(self, url: str, headers: Mapping[str, str]) -> requests.Response:
        """The response at the end of the redirects (streaming, to be closed by the caller)."""
        if not self._allowed(url):
            raise FetchError(url, "host_not_allowed",
                             f"{url}: host {urlsplit(url).hostname or '(none)'} is not among the allowed "
                             "hosts; not requested, add the host to allowed_hosts if the source lives there")
        return self._follow(url, url, headers, check_robots=True)

    def _follow(self, reported_url: str, url: str, headers: Mapping[str, str], *,
                check_robots: bool) -> requests.Response:
        for _ in range(self.policy.max_redirects + 1):
            if check_robots:
                self._require_robots_allow(reported_url, url)
            response = self._open(reported_url, url, headers)
            if not response.is_redirect:
                return response
            target = urljoin(url, response.headers["Location"])
            response.close()
            if not self._allowed(target):
                raise FetchError(reported_url, "redirect_off_site",
                                 f"{_where(reported_url, url)}: redirected to {target}, outside the allowed "
                                 "hosts; not followed, add its host to allowed_hosts if the source moved")
            url = target
        raise FetchError(reported_url, "too_many_redirects",
                         f"{reported_url}: more than {self.policy.max_redirects} redirects (the last to "
                         f"{url}); the site redirects in a loop, check the URL in a browser")

    def _open(self, reported_url: str, url: str, headers: Mapping[str, str]) -> requests.Response:
        self._wait_turn(urlsplit(url).hostname or "")
        try:
            return self._session.get(
                url, headers={**headers, "User-Agent": self.policy.user_agent}, stream=True,
                allow_redirects=False, timeout=(self.policy.connect_timeout, self.policy.read_timeout))
        except (requests.RequestException, HTTPError) as error:
            raise self._network_error(reported_url, url, error, receiving=False) from error

    def _wait_turn(self, host: str) -> None:
        interval = max(self.policy.interval_for(host), self._robots_intervals.get(host, 0.0))
        self._pacer.wait(host, interval)

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.hostname in self.policy.allowed_hosts

    # -- what came back ---------------------------------------------------------------------

    def _require_success(self, url: str, response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        where = _where(url, response.url)
        attempts = _attempts(response)
        if status in TRANSIENT_STATUSES:
            advice = ("the server asks us to slow down" if status == 429 else "the server is failing")
            raise FetchError(url, "http_status",
                             f"{where}: HTTP {status} after {attempts} attempt{'s' * (attempts > 1)}; "
                             f"{advice}, the check will be retried", status=status, transient=True)
        advice = {
            401: "it needs a login, so it cannot be checked automatically",
            403: "the server refuses us; check the URL in a browser or ask the site",
            404: "the address is wrong or the file moved, update the source's URL",
            410: "it was removed, update the source's URL",
        }.get(status, "check the URL in a browser and update the source")
        raise FetchError(url, "http_status", f"{where}: HTTP {status} {response.reason}; {advice}",
                         status=status)

    def _require_type(self, url: str, response: requests.Response, allowed: tuple[str, ...],
                      what: str) -> str:
        media_type = _media_type(response.headers.get("Content-Type"))
        if media_type not in allowed:
            raise FetchError(url, "content_type",
                             f"{_where(url, response.url)}: content type {media_type or '(none)'}, "
                             f"expected {' or '.join(allowed)}; the address does not point to a {what}, "
                             "check the source's URL", status=response.status_code)
        return media_type

    def _read(self, url: str, response: requests.Response, cap: int, what: str,
              sink: Callable[[bytes], object]) -> tuple[int, str]:
        """Streams the body into `sink`, hashing it; stops as soon as it passes `cap`."""
        cap_name = f"max_{what}_bytes"
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(url, "too_large",
                             f"{_where(url, response.url)}: {declared} bytes announced, over the "
                             f"{cap}-byte cap; not downloaded, raise {cap_name} if it is a genuine {what}",
                             status=response.status_code)
        digest = hashlib.sha256()
        size = 0
        for chunk in self._chunks(url, response):
            size += len(chunk)
            if size > cap:
                raise FetchError(url, "too_large",
                                 f"{_where(url, response.url)}: more than {cap} bytes; stopped reading, "
                                 f"raise {cap_name} if it is a genuine {what}",
                                 status=response.status_code, bytes_received=size)
            digest.update(chunk)
            sink(chunk)
        return size, digest.hexdigest()

    def _chunks(self, reported_url: str, response: requests.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_content(CHUNK_BYTES)
        except requests.RequestException as error:
            raise self._network_error(reported_url, response.url, error, receiving=True) from error

    def _network_error(self, reported_url: str, url: str, error: Exception, *,
                       receiving: bool) -> FetchError:
        reason: object = error.args[0] if error.args else error
        attempts = 1
        if isinstance(reason, MaxRetryError):
            # Only `total` is limited, so urllib3 gives up after exactly retries + 1 attempts.
            attempts = self.policy.retries + 1
            reason = reason.reason
        timed_out = isinstance(error, requests.Timeout) or (
            isinstance(reason, (ReadTimeoutError, ConnectTimeoutError))
            and not isinstance(reason, NewConnectionError))
        tries = "while receiving the body" if receiving else (
            f"after {attempts} attempt{'s' * (attempts > 1)}")
        where = _where(reported_url, url)
        if timed_out:
            return FetchError(reported_url, "timeout",
                              f"{where}: no answer within {self.policy.connect_timeout:g} s (connect) / "
                              f"{self.policy.read_timeout:g} s (read) {tries}; the server is slow or down, "
                              "the check will be retried", transient=True)
        return FetchError(reported_url, "connection",
                          f"{where}: connection failed {tries} ({_root_cause(error)}); the server or the "
                          "network is down, the check will be retried", transient=True)

    # -- robots.txt -------------------------------------------------------------------------

    def _require_robots_allow(self, reported_url: str, url: str) -> None:
        if not self._robots_for(reported_url, url).can_fetch(self.policy.user_agent, url):
            raise FetchError(reported_url, "robots_disallowed",
                             f"{_where(reported_url, url)}: robots.txt of {urlsplit(url).netloc} forbids it "
                             f"to {self.policy.user_agent!r}; not requested, check this source by hand")

    def _robots_for(self, reported_url: str, url: str) -> RobotFileParser:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            origin_lock = self._robots_locks.setdefault(origin, threading.Lock())
        with origin_lock:  # one robots.txt request per origin, however many threads ask
            cached = self._robots.get(origin)
            if cached is not None and time.monotonic() - cached[1] < ROBOTS_MAX_AGE_SECONDS:
                return cached[0]
            parser = self._fetch_robots(reported_url, f"{origin}/robots.txt")
            self._robots[origin] = (parser, time.monotonic())
            rate = parser.request_rate(self.policy.user_agent)
            self._robots_intervals[parts.hostname or ""] = max(
                float(parser.crawl_delay(self.policy.user_agent) or 0),
                rate.seconds / rate.requests if rate and rate.requests else 0.0)
            return parser

    def _fetch_robots(self, reported_url: str, robots_url: str) -> RobotFileParser:
        """RFC 9309 §2.3.1: 2xx rules apply; 4xx means no rules (but 401/403 are taken as "keep out");
        5xx or no answer is a failure of this check, never a licence to crawl."""
        parser = RobotFileParser(robots_url)
        try:
            response = self._follow(reported_url, robots_url, {}, check_robots=False)
        except FetchError as error:
            if error.kind not in ("redirect_off_site", "too_many_redirects"):
                raise
            parser.allow_all = True  # §2.3.1.2: a robots.txt out of reach by redirects is "unavailable"
            return parser
        with response:
            status = response.status_code
            if 200 <= status < 300:
                data = bytearray()
                for chunk in self._chunks(reported_url, response):
                    data += chunk
                    if len(data) >= ROBOTS_MAX_BYTES:
                        break
                parser.parse(data[:ROBOTS_MAX_BYTES].decode("utf-8", "replace").splitlines())
            elif status in (401, 403):
                parser.disallow_all = True
            elif status in TRANSIENT_STATUSES:
                attempts = _attempts(response)
                raise FetchError(reported_url, "http_status",
                                 f"{_where(reported_url, robots_url)}: HTTP {status} after {attempts} "
                                 f"attempt{'s' * (attempts > 1)}; cannot tell whether robots.txt allows the "
                                 "check, it will be retried", status=status, transient=True)
            else:
                parser.allow_all = True
        return parser


def _accept(media_types: tuple[str, ...]) -> str:
    return ", ".join((*media_types, "*/*;q=0.1"))


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _where(reported_url: str, url: str) -> str:
    """The URL asked for, and the hop that failed when it is another one."""
    return reported_url if url == reported_url else f"{reported_url} (at {url})"


def _attempts(response: requests.Response) -> int:
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) + 1 if retries is not None else 1


def _root_cause(error: BaseException) -> str:
    """The innermost OS-level reason ("Connection refused"), not urllib3's object reprs."""
    seen: set[int] = set()
    current: BaseException | None = error
    innermost, strerror = error, None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        innermost = current
        if isinstance(current, OSError) and current.strerror:
            strerror = current.strerror
        if isinstance(current, MaxRetryError):
            current = current.reason
        elif current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__ or current.__context__
    return strerror or str(innermost)


def _storage_writer(url: str, documents_dir: Path, handle: IO[bytes]) -> Callable[[bytes], object]:
    def write(chunk: bytes) -> object:
        try:
            return handle.write(chunk)
        except OSError as error:
            raise _storage_error(url, documents_dir, error) from error
    return write


def _storage_error(url: str, documents_dir: Path, error: OSError) -> FetchError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space"
    elif error.errno == errno.EFBIG:
        advice = ("the document is over the largest file allowed there (the file system's limit or "
                  "the process's `ulimit -f`): raise it")
    elif error.errno in (errno.ENOTDIR, errno.EEXIST):
        advice = "a file stands where a folder is needed: move it away"
    else:
        advice = "make it writable"
    return FetchError(url, "storage",
                      f"{url}: cannot write to {documents_dir}: {error.strerror or error}; {advice} or set "
                      "REFRESH_DOCUMENTS_DIR", transient=error.errno in (errno.ENOSPC, errno.EDQUOT))
