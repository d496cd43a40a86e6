"""The EMAIL channel: the rendered mail (herald/channels/email_render.py) sent over SMTP with aiosmtplib.

`smtp_url` says where and how: smtp://user:pass@host:port for plain SMTP (STARTTLS when the server offers it),
?starttls=1 to require STARTTLS, ?starttls=0 to never use it, smtps:// for TLS from the first byte.
User and password are percent-decoded, so a password may hold any character.

Connections are pooled and kept open between sends: a new SMTP session costs a TCP (and often a TLS) handshake,
EHLO and AUTH, several round trips per mail. A pooled connection the server closed while idle is replaced
and the send tried again at once, as that is not a failure of the delivery.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from herald.channels.base import ChannelProvider, DeliveryJob, RetryPolicy
from herald.channels.email_render import render_email
from herald.config import Settings
from herald.errors import ConfigError, DeliveryError

log = logging.getLogger(__name__)

REQUIRED_SETTINGS = "smtp_url (and email_from)"
DEFAULT_MAX_CONNECTIONS = 4
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool | None = None  # None: upgrade when the server offers STARTTLS (aiosmtplib's default)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """The server of `smtp_url`; ConfigError names what is wrong without repeating the URL (it holds the
    password)."""
    parts = urlsplit(url)
    if parts.scheme not in {"smtp", "smtps"}:
        raise ConfigError("smtp_url must start with smtp:// or smtps://")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError("smtp_url has an invalid port") from exc
    if not parts.hostname:
        raise ConfigError("smtp_url names no host")
    use_tls = parts.scheme == "smtps"
    start_tls: bool | None = None
    flag = parse_qs(parts.query).get("starttls", [None])[-1]
    if flag is not None:
        if flag.lower() not in _TRUE | _FALSE:
            raise ConfigError("smtp_url: starttls must be 1 or 0")
        start_tls = flag.lower() in _TRUE
    if use_tls and start_tls:
        raise ConfigError("smtp_url: smtps:// is TLS already; starttls=1 applies to smtp:// only")
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if use_tls else 587 if start_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        use_tls=use_tls,
        start_tls=False if use_tls else start_tls,
    )


def envelope_sender(email_from: str) -> str:
    """The bare address of `email_from` ("Herald <n@example.org>" -> n@example.org), for MAIL FROM."""
    _, address = parseaddr(email_from)
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise ConfigError(f"email_from {email_from!r} holds no usable address") from exc
    if "@" not in address:
        raise ConfigError(f"email_from {email_from!r} holds no usable address")
    return address


class _Retry(Exception):
    """A pooled connection turned out to be dead; the mail goes out again on a new one."""


def _idle_timeout(exc: BaseException) -> bool:
    """How a server that dropped an idle session answers the next command: gone, or 421 then gone.

    Should the drop come after the server took the mail, the repeat carries the same Message-ID.
    """
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return True
    return isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421


class EmailProvider(ChannelProvider):
    channel = "EMAIL"

    def __init__(
        self,
        target: SmtpTarget,
        email_from: str,
        policy: RetryPolicy | None = None,
        *,
        timeout_s: float = 15.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        tls_context: ssl.SSLContext | None = None,
        **options: Any,
    ) -> None:
        super().__init__(policy, **options)
        self.target = target
        self.email_from = email_from
        self._sender = envelope_sender(email_from)
        self._timeout_s = timeout_s
        self._tls_context = tls_context
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(max_connections)
        self.connections_opened = 0

    async def start(self) -> None:
        """Open one connection ahead of the first mail; a server that is down now is retried by the sends."""
        try:
            self._idle.append(await self._connect())
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("EMAIL: no connection to %s yet: %s", self.target, self._redact(str(exc)))

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            await self._quit(client)

    async def send(self, job: DeliveryJob) -> None:
        recipient = job.recipient
        if recipient is None or not recipient.email:
            raise DeliveryError(f"user {job.user_id} has no email address", retriable=False)
        try:
            mail = render_email(job, sender=self.email_from)
        except ValueError as exc:  # an address the email package refuses: it will not change by retrying
            raise DeliveryError(str(exc), retriable=False) from exc
        async with self._slots:
            try:
                await self._send_on_pooled(mail, recipient.email)
            except _Retry:
                await self._send_on_new(mail, recipient.email)

    async def _send_on_pooled(self, mail: EmailMessage, to: str) -> None:
        if not self._idle:
            await self._send_on_new(mail, to)
            return
        await self._send_on(self._idle.pop(), mail, to, pooled=True)

    async def _send_on_new(self, mail: EmailMessage, to: str) -> None:
        try:
            client = await self._connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._delivery_error(exc) from exc
        await self._send_on(client, mail, to, pooled=False)

    async def _send_on(self, client: aiosmtplib.SMTP, mail: EmailMessage, to: str, *, pooled: bool) -> None:
        try:
            await client.send_message(mail, sender=self._sender, recipients=[to])
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            self._settle(client, exc)
            if pooled and _idle_timeout(exc):
                raise _Retry from exc
            raise self._delivery_error(exc) from exc
        except BaseException:
            client.close()  # cancelled mid-transaction: the session is in an unknown state
            raise
        self._idle.append(client)

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.target.host,
            port=self.target.port,
            username=self.target.username,
            password=self.target.password,
            use_tls=self.target.use_tls,
            start_tls=self.target.start_tls,
            tls_context=self._tls_context,
            timeout=self._timeout_s,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        self.connections_opened += 1
        return client

    def _settle(self, client: aiosmtplib.SMTP, exc: BaseException) -> None:
        """Keep a connection the server only refused this mail on (it reset the envelope); drop any other."""
        refused = isinstance(exc, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPSenderRefused)
        if refused and client.is_connected:
            self._idle.append(client)
        else:
            client.close()

    @staticmethod
    async def _quit(client: aiosmtplib.SMTP) -> None:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    def _delivery_error(self, exc: Exception) -> DeliveryError:
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            # A 4xx (greylisting, a full mailbox) may pass later; a 5xx (no such mailbox) never will.
            retriable = any(400 <= code < 500 for code in codes)
            return DeliveryError(self._redact(f"SMTP recipient refused: {detail}"), retriable=retriable)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            what = "SMTP authentication failed" if isinstance(exc, aiosmtplib.SMTPAuthenticationError) else "SMTP"
            reason = self._redact(f"{what}: {exc.code} {exc.message}")
            return DeliveryError(reason, retriable=not 500 <= exc.code < 600)
        if isinstance(exc, aiosmtplib.SMTPNotSupported) or (
            isinstance(exc, ValueError) and not isinstance(exc, OSError)
        ):
            # The server lacks what the settings require (AUTH, STARTTLS), or an address is unusable: retrying
            # changes nothing. A certificate that fails verification (an OSError too) stays retriable: while
            # an operator renews it the breaker holds the mail instead of dead-lettering all of it.
            return DeliveryError(self._redact(f"SMTP server {self.target}: {exc}"), retriable=False)
        if isinstance(exc, aiosmtplib.SMTPException | OSError):
            return DeliveryError(self._redact(f"SMTP server {self.target}: {exc}"), retriable=True)
        return DeliveryError(self._redact(f"SMTP send failed: {type(exc).__name__}: {exc}"), retriable=True)

    def _redact(self, text: str) -> str:
        password = self.target.password
        return text.replace(password, "***") if password else text


def from_settings(settings: Settings, policy: RetryPolicy, **options: Any) -> EmailProvider | None:
    if settings.smtp_url is None:
        return None
    return EmailProvider(
        parse_smtp_url(settings.smtp_url.get_secret_value()),
        settings.email_from,
        policy,
        timeout_s=settings.delivery_timeout_s,
        **options,
    )
