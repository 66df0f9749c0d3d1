"""Email to stakeholders over SMTP (stdlib smtplib). Off unless REFRESH_SMTP_HOST is set.

Variables: REFRESH_SMTP_HOST, REFRESH_SMTP_PORT (587), REFRESH_SMTP_SECURITY (starttls |
ssl | none; default starttls), REFRESH_SMTP_USER, REFRESH_SMTP_PASSWORD, REFRESH_SMTP_SENDER,
REFRESH_SMTP_RECIPIENTS (comma-separated). The password is never logged.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage

SECURITY_MODES = ("starttls", "ssl", "none")


class SmtpSettingsError(ValueError):
    pass


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def smtp_settings(environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """The configured server, or None when email is off."""
    env = os.environ if environ is None else environ
    host = env.get("REFRESH_SMTP_HOST")
    if not host:
        return None
    security = env.get("REFRESH_SMTP_SECURITY", "starttls")
    if security not in SECURITY_MODES:
        raise SmtpSettingsError(f"REFRESH_SMTP_SECURITY must be one of {SECURITY_MODES}, "
                                f"got {security!r}")
    recipients = tuple(r.strip() for r in env.get("REFRESH_SMTP_RECIPIENTS", "").split(",")
                       if r.strip())
    sender = env.get("REFRESH_SMTP_SENDER", "")
    if not recipients or not sender:
        raise SmtpSettingsError("REFRESH_SMTP_HOST is set: REFRESH_SMTP_SENDER and "
                                "REFRESH_SMTP_RECIPIENTS are needed too")
    return SmtpSettings(host=host, port=int(env.get("REFRESH_SMTP_PORT", "587")),
                        security=security, sender=sender, recipients=recipients,
                        user=env.get("REFRESH_SMTP_USER") or None,
                        password=env.get("REFRESH_SMTP_PASSWORD") or None)


def send_html(settings: SmtpSettings, subject: str, html: str, text: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    if settings.security == "ssl":
        client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=30,
                                  context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=30)
    with client:
        if settings.security == "starttls":
            client.starttls(context=ssl.create_default_context())
        if settings.user:
            client.login(settings.user, settings.password or "")
        client.send_message(message)
