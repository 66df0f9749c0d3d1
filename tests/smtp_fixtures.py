"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.policy import default

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port


class Inbox:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self):
        return [message_from_bytes(e.content, policy=default) for e in self.envelopes]

    def subjects(self) -> list[str]:
        return [m["Subject"] for m in self.messages()]


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """The inbox and the port it listens on, for as long as the block runs."""
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def use_smtp_server(monkeypatch: pytest.MonkeyPatch, port: int, **overrides: str) -> None:
    """Points the REFRESH_SMTP_* variables at the test server (plain SMTP, no login)."""
    values = {"HOST": "127.0.0.1", "PORT": str(port), "SECURITY": "none",
              "SENDER": "refresh@example.org", "RECIPIENTS": "cfo@example.org",
              "OPERATORS": "ops@example.org", **overrides}
    for name, value in values.items():
        monkeypatch.setenv(f"REFRESH_SMTP_{name}", value)
