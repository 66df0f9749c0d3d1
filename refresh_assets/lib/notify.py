"""Email to stakeholders over SMTP (stdlib smtplib). Off unless REFRESH_SMTP_HOST is set.

Variables (read by the Dagster resource `SmtpResource` through EnvVar): REFRESH_SMTP_HOST,
REFRESH_SMTP_PORT (587), REFRESH_SMTP_SECURITY (starttls | ssl | none; default starttls),
REFRESH_SMTP_USER, REFRESH_SMTP_PASSWORD, REFRESH_SMTP_SENDER, REFRESH_SMTP_RECIPIENTS
(stakeholders, comma-separated) and REFRESH_SMTP_OPERATORS (who is told to enter new
documents; default: the recipients). The password is never logged.
"""

from __future__ import annotations

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


def smtp_settings(values: Mapping[str, str | None], *, operators: bool = False
                  ) -> SmtpSettings | None:
    """The configured server from the REFRESH_SMTP_* values, or None when email is off
    (no host). With `operators`, addressed to REFRESH_SMTP_OPERATORS when it is set.

    Raises:
        SmtpSettingsError: one line naming the variable, the value and what it must be.
    """
    host = (values.get("REFRESH_SMTP_HOST") or "").strip()
    if not host:
        return None
    security = values.get("REFRESH_SMTP_SECURITY") or "starttls"
    if security not in SECURITY_MODES:
        raise SmtpSettingsError(f"REFRESH_SMTP_SECURITY must be one of {', '.join(SECURITY_MODES)}, "
                                f"got {security!r}")
    port_text = values.get("REFRESH_SMTP_PORT") or "587"
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SmtpSettingsError(f"REFRESH_SMTP_PORT must be a port number (1-65535), "
                                f"got {port_text!r}")
    addresses = (operators and values.get("REFRESH_SMTP_OPERATORS")) or values.get(
        "REFRESH_SMTP_RECIPIENTS") or ""
    recipients = tuple(r.strip() for r in addresses.split(",") if r.strip())
    sender = values.get("REFRESH_SMTP_SENDER") or ""
    if not recipients or not sender:
        raise SmtpSettingsError("REFRESH_SMTP_HOST is set: REFRESH_SMTP_SENDER and "
                                "REFRESH_SMTP_RECIPIENTS are needed too")
    return SmtpSettings(host=host, port=int(port_text), security=security, sender=sender,
                        recipients=recipients, user=values.get("REFRESH_SMTP_USER") or None,
                        password=values.get("REFRESH_SMTP_PASSWORD") or None)


class EmailError(RuntimeError):
    """An email could not be sent; the message names the server and the settings to check."""


def send_html(settings: SmtpSettings, subject: str, html: str, text: str) -> None:
    """Sends one email. Raises EmailError, never the password."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    try:
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
    except (smtplib.SMTPException, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise EmailError(
            f"email to {settings.host}:{settings.port} ({settings.security}) failed: {reason}; "
            "check REFRESH_SMTP_HOST, REFRESH_SMTP_PORT, REFRESH_SMTP_SECURITY and the "
            "credentials") from exc
