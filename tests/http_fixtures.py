"""A real HTTP server on 127.0.0.1 for tests of code that fetches web pages.

Routes are set per path (a fixed reply, or a sequence of replies whose last one repeats); the
server records every request it receives, so a test can assert what was - and was not - asked.
Reuse it with `from tests import http_fixtures` and `served_site = http_fixtures.served_site` in a
test module (a plain `from ... import served_site` trips ruff's F811 at every test parameter).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass(frozen=True)
class Reply:
    """One response. `delay` is waited before the status line; `filler_bytes`, when set, streams
    that many bytes in place of `body`, without a Content-Length unless `declare_length`."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    filler_bytes: int = 0
    declare_length: bool = False


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names in lower case
    received_at: float  # time.monotonic() when the request line was read


class ServedSite:
    """A ThreadingHTTPServer in a thread. Unknown paths answer 404 (so robots.txt allows all)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, list[Reply]] = {}
        self._requests: list[SeenRequest] = []
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A handler still sleeping out a delay must not hold up the end of the test.
        self._server.block_on_close = False
        self.host = "127.0.0.1"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> ServedSite:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str, host: str | None = None) -> str:
        """`http://127.0.0.1:<port><path>`; another `host` name (e.g. localhost) for the same server."""
        return f"http://{host or self.host}:{self.port}{path}"

    def route(self, path: str, body: bytes | str = b"", *, status: int = 200,
              content_type: str = "text/html; charset=utf-8", headers: Mapping[str, str] | None = None,
              delay: float = 0.0) -> None:
        if isinstance(body, str):
            body = body.encode()
        self.replies(path, [Reply(status, body, {"Content-Type": content_type, **(headers or {})}, delay)])

    def replies(self, path: str, replies: Sequence[Reply]) -> None:
        """Answers the next requests to `path` with `replies` in order, then repeats the last."""
        with self._lock:
            self._routes[path] = list(replies)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.replies(path, [Reply(status, headers={"Location": location})])

    @property
    def requests(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._requests)

    def paths(self) -> list[str]:
        return [seen.path for seen in self.requests]

    def requests_to(self, path: str) -> list[SeenRequest]:
        return [seen for seen in self.requests if seen.path == path]

    def _next_reply(self, method: str, path: str, headers: Mapping[str, str]) -> Reply | None:
        with self._lock:
            self._requests.append(SeenRequest(method, path, headers, time.monotonic()))
            queue = self._routes.get(path)
            if not queue:
                return None
            return queue.pop(0) if len(queue) > 1 else queue[0]


def _handler_for(site: ServedSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = site._next_reply("GET", self.path, headers) or Reply(
                404, b"not found", {"Content-Type": "text/plain"})
            if reply.delay and site._stopping.wait(reply.delay):
                return
            if reply.status == 200 and _still_fresh(reply.headers, headers):
                reply = Reply(304, headers={k: v for k, v in reply.headers.items()
                                            if k.lower() in ("etag", "last-modified")})
            try:
                self._send(reply)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timeout, size cap): expected

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if not reply.filler_bytes:
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                return
            if reply.declare_length:
                self.send_header("Content-Length", str(reply.filler_bytes))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            chunk = b"x" * 65536
            for start in range(0, reply.filler_bytes, len(chunk)):
                self.wfile.write(chunk[: reply.filler_bytes - start])

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test output is for the tests."""

    return Handler


def _still_fresh(reply_headers: Mapping[str, str], request_headers: Mapping[str, str]) -> bool:
    """Whether a conditional GET matches the reply's validators (so 304 is due)."""
    reply = {name.lower(): value for name, value in reply_headers.items()}
    if "if-none-match" in request_headers:
        return reply.get("etag") is not None and reply["etag"] in (
            tag.strip() for tag in request_headers["if-none-match"].split(","))
    if "if-modified-since" in request_headers and "last-modified" in reply:
        try:
            return (parsedate_to_datetime(reply["last-modified"])
                    <= parsedate_to_datetime(request_headers["if-modified-since"]))
        except (TypeError, ValueError):
            return False
    return False


@pytest.fixture
def served_site() -> Iterator[ServedSite]:
    with ServedSite() as site:
        yield site
