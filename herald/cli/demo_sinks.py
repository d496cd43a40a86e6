"""Local stand-ins for the outside world, so `herald demo` shows every channel without an account anywhere: an SMTP
server (aiosmtpd) for email and one HTTP server that plays a webhook receiver, an SMS API and a Web Push service
(each watched user's "browser" subscription points at it; it decrypts what arrives with that browser's key).
Each delivery they receive becomes a line in the demo's view."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import http_ece  # type: ignore[import-untyped]
import orjson
import uvicorn
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from herald.asgi_request import header_map, read_body
from herald.channels.webhook import verify_signature
from herald.config import Settings
from herald.contacts import Contact

SMS_ACCOUNT = "demo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DeliveryLog:
    """The newest deliveries the sinks received, one line each."""

    lines: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    counts: dict[str, int] = field(default_factory=lambda: {"EMAIL": 0, "PUSH": 0, "SMS": 0, "WEBHOOK": 0})

    def add(self, channel: str, line: str) -> None:
        self.counts[channel] += 1
        self.lines.appendleft(f"{channel:<8}{line}")


class _SmtpHandler:
    def __init__(self, log: DeliveryLog) -> None:
        self._log = log

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        subject = str(make_header(decode_header(message.get("Subject", ""))))
        self._log.add("EMAIL", f"to {', '.join(envelope.rcpt_tos)}: {subject}")
        return "250 OK"


class DemoSinks:
    def __init__(self) -> None:
        self.log = DeliveryLog()
        self.webhook_secret = secrets.token_urlsafe(24)
        self.sms_token = secrets.token_urlsafe(16)
        self._smtp = Controller(_SmtpHandler(self.log), hostname="127.0.0.1", port=_free_port())
        self._http_port = _free_port()
        config = uvicorn.Config(
            self._app, host="127.0.0.1", port=self._http_port, log_level="warning", lifespan="off", interface="asgi3"
        )
        self._http = uvicorn.Server(config)
        # In a thread of its own: uvicorn installs its own SIGINT handler when it serves on the main thread,
        # which would take Ctrl-C away from the demo's drain.
        self._thread = threading.Thread(target=self._http.run, name="demo-http-sink", daemon=True)
        self._dir = tempfile.TemporaryDirectory(prefix="herald-demo-")
        self._vapid_file = Path(self._dir.name) / "vapid.pem"
        vapid_key = ec.generate_private_key(ec.SECP256R1())
        self._vapid_file.write_bytes(
            vapid_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self._browsers: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]] = {}  # user -> (key, auth secret)

    def settings(self, base: Settings) -> Settings:
        """`base` with the email, SMS and webhook channels pointed at these sinks."""
        http = f"http://127.0.0.1:{self._http_port}"
        return base.model_copy(
            update={
                # model_copy does not validate: secrets go in as SecretStr themselves.
                "smtp_url": SecretStr(f"smtp://127.0.0.1:{self._smtp.port}"),
                "email_from": "Herald demo <demo@herald.localhost>",
                "webhook_url": f"{http}/webhook",
                "webhook_secret": SecretStr(self.webhook_secret),
                "sms_url": f"{http}/sms/{{account}}/Messages.json",
                "sms_account": SMS_ACCOUNT,
                "sms_token": SecretStr(self.sms_token),
                "sms_from": "+15550000000",
                "vapid_private_key_file": self._vapid_file,
                "vapid_subject": "mailto:demo@herald.localhost",
            }
        )

    @staticmethod
    def contact(user: str, index: int) -> Contact:
        return Contact(user, email=f"{user}@demo.localhost", phone=f"+1555010{index:04d}", timezone="UTC")

    async def __aenter__(self) -> DemoSinks:
        self._smtp.start()
        self._thread.start()
        while not self._http.started:
            if not self._thread.is_alive():
                raise RuntimeError("the demo's HTTP sink did not start")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._http.should_exit = True
        await asyncio.to_thread(self._thread.join, 10)
        self._smtp.stop()
        self._dir.cleanup()

    def browser_subscription(self, user: str) -> dict[str, Any]:
        """A Web Push subscription as a browser would make it, pointing at this sink's push service."""
        key = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        self._browsers[user] = (key, auth)
        point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {
            "endpoint": f"http://127.0.0.1:{self._http_port}/push/{user}",
            "keys": {"p256dh": _b64url(point), "auth": _b64url(auth)},
        }

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        status = self._receive(scope["path"], header_map(scope), body)
        reply_headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": reply_headers})
        await send({"type": "http.response.body", "body": b"{}"})

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> int:
        if path == "/webhook":
            signed = verify_signature(
                self.webhook_secret,
                headers.get("x-herald-timestamp", ""),
                body,
                headers.get("x-herald-signature", ""),
                now=time.time(),
            )
            doc = orjson.loads(body)
            note = doc.get("notification") or {}
            digest = doc.get("digest") or {}
            what = f"{note.get('id')} v{note.get('version')}" if note else f"digest of {digest.get('count')}"
            self.log.add("WEBHOOK", f"{'signed' if signed else 'BAD SIGNATURE'} {doc.get('userId')}: {what}")
            return 200 if signed else 401
        if path.startswith("/push/"):
            user = path.removeprefix("/push/")
            key, auth = self._browsers[user]
            message = orjson.loads(http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm"))
            what = message.get("text") or f"{message.get('digest')} new notifications"
            self.log.add("PUSH", f"to {user}'s browser (decrypted): {what}")
            return 201
        if path.startswith("/sms/"):
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            self.log.add("SMS", f"to {form.get('To')}: {form.get('Body')}")
            return 201
        return 404


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
