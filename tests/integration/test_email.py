"""The EMAIL channel against real SMTP servers (aiosmtpd on loopback, in a thread of its own): what arrives,
AUTH, STARTTLS, temporary and permanent refusals, a pooled connection the server dropped, a server that is down.

No stack needed: every server here is started by the test. The handler records a mail before it answers 250,
so once `deliver` returns, what the server received is there to check, with no waiting.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from herald.channels import email as email_channel
from herald.channels.base import Recipient, RetryPolicy
from herald.channels.email import EmailProvider, parse_smtp_url
from herald.channels.email_render import message_id
from herald.config import load_settings
from tests.support.email_jobs import body, job

pytestmark = pytest.mark.integration

SENDER = "Herald <notifications@herald.example>"
SCRIPT = "<script>alert(1)</script>"
USER, PASSWORD = "herald", "p@ss:w/rd%secret"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: bytes | None
    tls: bool


@dataclass
class Recorder:
    """An aiosmtpd handler: records each mail, answering with the scripted replies first."""

    data_replies: list[str] = field(default_factory=list)  # e.g. "451 4.3.0 try later", used up in order
    refused: dict[str, str] = field(default_factory=dict)  # address -> RCPT reply
    mails: list[Received] = field(default_factory=list)
    data_commands: int = 0

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refused:
            return self.refused[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.data_commands += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        assert isinstance(envelope.content, bytes)
        auth = session.auth_data
        self.mails.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message_from_bytes(envelope.content, policy=policy.default),
                login=auth.login if isinstance(auth, LoginPassword) else None,
                tls=session.ssl is not None,
            )
        )
        return "250 OK"


def check_password(server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    good = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
    # handled=False: aiosmtpd answers a refusal with 535 itself (True would leave the client waiting).
    return AuthResult(success=good, handled=False, auth_data=data if good else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    recorder: Recorder
    port: int
    controller: Controller

    def url(self, *, user: str | None = None, password: str | None = None, query: str = "") -> str:
        auth = f"{quote(user, safe='')}:{quote(password or '', safe='')}@" if user else ""
        return f"smtp://{auth}127.0.0.1:{self.port}{query}"


ServerFactory = Callable[..., Server]


@pytest.fixture
def smtp_server() -> Iterator[ServerFactory]:
    """Starts aiosmtpd controllers on free loopback ports; all are stopped at teardown."""
    controllers: list[Controller] = []

    def start(recorder: Recorder | None = None, port: int | None = None, **options: Any) -> Server:
        recorder = recorder or Recorder()
        port = port or free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return Server(recorder, port, controller)

    yield start
    for controller in controllers:
        if controller._thread is not None:
            controller.stop()


@dataclass
class Sleeps:
    seconds: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
async def make_provider() -> AsyncIterator[Callable[..., EmailProvider]]:
    providers: list[EmailProvider] = []

    def make(url: str, *, max_attempts: int = 3, sleep: Sleeps | None = None, **options: Any) -> EmailProvider:
        provider = EmailProvider(
            parse_smtp_url(url),
            SENDER,
            RetryPolicy(max_attempts=max_attempts, base_delay_s=0.5),
            timeout_s=5.0,
            sleep=sleep or Sleeps(),
            rng=lambda: 1.0,
            **options,
        )
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.close()


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    return plain.get_content(), html.get_content()


async def test_a_notification_arrives_with_both_parts_and_its_headers(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider]
) -> None:
    server = smtp_server()
    provider = make_provider(server.url())
    await provider.start()
    payload = {**body(text=f"{SCRIPT} liked your post"), "actors": [{"id": "x", "name": SCRIPT}]}
    outcome = await provider.deliver(job(payload))
    assert (outcome.delivered, outcome.attempts, outcome.error, outcome.channel) == (True, 1, None, "EMAIL")
    [mail] = server.recorder.mails
    assert mail.mail_from == "notifications@herald.example"
    assert mail.rcpt_tos == ["alice@example.org"]
    assert mail.message["Subject"] == f"{SCRIPT} liked your post"
    assert mail.message["From"] == SENDER
    assert mail.message["To"] == "Alice Example <alice@example.org>"
    assert mail.message["Message-ID"] == message_id("n1:1:EMAIL")
    assert mail.message["X-Herald-Delivery-Id"] == "n1:1:EMAIL"
    assert mail.message["Date"] is not None
    plain, html = text_and_html(mail.message)
    assert f"{SCRIPT} liked your post" in plain
    assert "&lt;script&gt;alert(1)&lt;/script&gt; liked your post" in html
    assert "<script" not in html


async def test_a_digest_lists_its_items(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider]
) -> None:
    server = smtp_server()
    provider = make_provider(server.url())
    items = [
        body("n1", "Carol followed you", "2026-11-29T08:00:00.000Z"),
        body("n2", "Dan replied to your comment", "2026-11-29T09:30:00.000Z"),
    ]
    digest = {"digest": {"count": 2, "items": items, "period": "hourly"}}
    assert (await provider.deliver(job(digest, delivery_id="digest:u1:EMAIL:7"))).delivered
    [mail] = server.recorder.mails
    assert mail.message["Subject"] == "You have 2 new notifications"
    assert mail.message["X-Herald-Delivery-Id"] == "digest:u1:EMAIL:7"
    plain, html = text_and_html(mail.message)
    assert plain.index("Dan replied") < plain.index("Carol followed")
    assert "09:30 UTC  Dan replied to your comment" in plain
    assert "Carol followed you" in html
    assert "Dan replied to your comment" in html


async def test_connections_are_kept_open_between_mails(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider]
) -> None:
    server = smtp_server()
    provider = make_provider(server.url())
    await provider.start()
    for n in range(3):
        assert (await provider.deliver(job(body(f"n{n}"), delivery_id=f"n{n}:1:EMAIL"))).delivered
    assert provider.connections_opened == 1
    assert [m.message["X-Herald-Delivery-Id"] for m in server.recorder.mails] == [f"n{n}:1:EMAIL" for n in range(3)]


async def test_a_connection_the_server_dropped_is_replaced_without_spending_an_attempt(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider]
) -> None:
    first = smtp_server()
    sleeps = Sleeps()
    provider = make_provider(first.url(), sleep=sleeps)
    await provider.start()
    first.controller.stop()  # the server restarts: the pooled session is gone
    second = smtp_server(port=first.port)
    outcome = await provider.deliver(job(body()))
    assert (outcome.delivered, outcome.attempts, sleeps.seconds) == (True, 1, [])
    assert provider.connections_opened == 2
    assert len(second.recorder.mails) == 1


async def test_auth_with_the_right_password_delivers(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider]
) -> None:
    server = smtp_server(authenticator=check_password, auth_require_tls=False)
    provider = make_provider(server.url(user=USER, password=PASSWORD))
    assert provider.target.password == PASSWORD  # percent-decoded from the URL
    assert (await provider.deliver(job(body()))).delivered
    [mail] = server.recorder.mails
    assert mail.login == USER.encode()


async def test_auth_with_a_wrong_password_fails_for_good_without_naming_it(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider]
) -> None:
    server = smtp_server(authenticator=check_password, auth_require_tls=False)
    wrong = "hunter2-wrong"
    sleeps = Sleeps()
    provider = make_provider(server.url(user=USER, password=wrong), max_attempts=5, sleep=sleeps)
    await provider.start()  # logs the refusal, does not raise
    outcome = await provider.deliver(job(body()))
    assert not outcome.delivered
    assert outcome.attempts == 1
    assert sleeps.seconds == []
    assert outcome.error is not None
    assert "535" in outcome.error
    assert "authentication" in outcome.error.lower()
    assert wrong not in outcome.error
    assert server.recorder.mails == []


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "herald test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


async def test_starttls_with_auth(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider], tmp_path: Path
) -> None:
    cert_file, key_file = self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    # AUTH over TLS only (aiosmtpd's default) and no mail before STARTTLS: a plaintext session cannot deliver.
    server = smtp_server(tls_context=server_tls, require_starttls=True, authenticator=check_password)
    client_tls = ssl.create_default_context(cafile=str(cert_file))
    provider = make_provider(server.url(user=USER, password=PASSWORD, query="?starttls=1"), tls_context=client_tls)
    assert provider.target.start_tls is True
    outcome = await provider.deliver(job(body()))
    assert (outcome.delivered, outcome.error) == (True, None)
    [mail] = server.recorder.mails
    assert mail.tls
    assert mail.login == USER.encode()


async def test_starttls_to_a_server_whose_certificate_is_not_trusted_fails(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider], tmp_path: Path
) -> None:
    cert_file, key_file = self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    server = smtp_server(tls_context=server_tls, require_starttls=True)
    provider = make_provider(server.url(query="?starttls=1"), max_attempts=2)  # the system's CAs only
    outcome = await provider.deliver(job(body()))
    assert not outcome.delivered
    assert outcome.attempts == 2
    assert outcome.error is not None
    assert "certificate" in outcome.error.lower()
    assert server.recorder.mails == []


async def test_a_temporary_refusal_is_retried_then_delivered_once(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider]
) -> None:
    server = smtp_server(Recorder(data_replies=["451 4.3.0 Temporary local problem, try later"]))
    sleeps = Sleeps()
    provider = make_provider(server.url(), max_attempts=5, sleep=sleeps)
    outcome = await provider.deliver(job(body()))
    assert (outcome.delivered, outcome.attempts) == (True, 2)
    assert sleeps.seconds == [0.5]  # base_delay_s * 2**0 with rng() == 1
    assert server.recorder.data_commands == 2
    [mail] = server.recorder.mails
    assert mail.message["Message-ID"] == message_id("n1:1:EMAIL")


async def test_an_unknown_mailbox_fails_for_good(
    smtp_server: ServerFactory, make_provider: Callable[..., EmailProvider]
) -> None:
    recorder = Recorder(refused={"alice@example.org": "550 5.1.1 mailbox unavailable"})
    server = smtp_server(recorder)
    sleeps = Sleeps()
    provider = make_provider(server.url(), max_attempts=5, sleep=sleeps)
    await provider.start()
    outcome = await provider.deliver(job(body()))
    assert (outcome.delivered, outcome.attempts, sleeps.seconds) == (False, 1, [])
    assert outcome.error is not None
    assert "550" in outcome.error
    assert "mailbox unavailable" in outcome.error
    # The refusal reset the envelope only: the session serves the next mail.
    bob = Recipient("u2", email="bob@example.org")
    assert (await provider.deliver(job(body(), bob, "n1:1:EMAIL:u2"))).delivered
    assert provider.connections_opened == 1
    assert [m.rcpt_tos for m in server.recorder.mails] == [["bob@example.org"]]


@pytest.mark.parametrize(
    ("recipient", "reason"),
    [
        (None, "user u1 has no email address"),
        (Recipient("u1", name="No Mail"), "user u1 has no email address"),
        (Recipient("u1", email="a,b@example.org"), "user u1 has no usable email address"),
        (Recipient("u1", email="a@b@example.org"), "user u1 has no usable email address"),
    ],
)
async def test_a_recipient_without_an_address_fails_for_good(
    smtp_server: ServerFactory,
    make_provider: Callable[..., EmailProvider],
    recipient: Recipient | None,
    reason: str,
) -> None:
    server = smtp_server()
    provider = make_provider(server.url())
    outcome = await provider.deliver(job(body(), recipient))
    assert (outcome.delivered, outcome.attempts, outcome.error) == (False, 1, reason)
    assert server.recorder.data_commands == 0


async def test_a_server_that_is_down_is_retried_up_to_max_attempts_then_reported(
    make_provider: Callable[..., EmailProvider],
) -> None:
    port = free_port()  # nothing listens on it
    sleeps = Sleeps()
    provider = make_provider(f"smtp://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}", max_attempts=4, sleep=sleeps)
    await provider.start()
    outcome = await provider.deliver(job(body()))
    assert (outcome.delivered, outcome.attempts) == (False, 4)
    assert sleeps.seconds == [0.5, 1.0, 2.0]
    assert outcome.error is not None
    assert f"127.0.0.1:{port}" in outcome.error
    assert PASSWORD not in outcome.error
    assert outcome.receipt()["status"] == "FAILED"


def test_from_settings_needs_an_smtp_url() -> None:
    assert email_channel.from_settings(load_settings(smtp_url=None), RetryPolicy()) is None
    provider = email_channel.from_settings(
        load_settings(smtp_url="smtps://a%40b:x%2Fy@mail.example:2465", email_from=SENDER, delivery_timeout_s=3),
        RetryPolicy(),
    )
    assert provider is not None
    assert provider.channel == "EMAIL"
    target = provider.target
    assert (target.host, target.port, target.username, target.password) == ("mail.example", 2465, "a@b", "x/y")
    assert (target.use_tls, target.start_tls) == (True, False)
    assert "x/y" not in repr(target)
