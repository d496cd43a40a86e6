"""SMS: a form POST in the shape of Twilio's Messages API (To, From, Body; HTTP basic auth with the account).

Only notifications at or above `sms_min_priority` go out: a text message interrupts and costs money, so lower
ones raise BelowMinimumPriority (a Skipped, counted apart from failures). The body is fitted to
`sms_max_segments` parts so one notification is never billed as a long run of parts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson

from herald.channels import sms_text
from herald.channels.base import ChannelProvider, DeliveryJob, RetryPolicy
from herald.channels.http_errors import origin, redact, status_error, transport_error
from herald.channels.policy_errors import BelowMinimumPriority
from herald.config import Settings
from herald.errors import DeliveryError

REQUIRED_SETTINGS = "sms_url, sms_account, sms_token, sms_from"

PRIORITY_RANK: Mapping[str, int] = {"LOW": 0, "NORMAL": 1, "HIGH": 2, "URGENT": 3, "CRITICAL": 4}
DEFAULT_PRIORITY = "NORMAL"  # what herald.events gives an event that names none


def job_priority(job: DeliveryJob) -> str:
    """The notification's priority; a digest ranks as its most pressing item."""
    bodies = job.digest_items() if job.is_digest else [job.payload]
    ranked = [p for b in bodies if isinstance(p := b.get("priority"), str) and p in PRIORITY_RANK]
    return max(ranked, key=PRIORITY_RANK.__getitem__, default=DEFAULT_PRIORITY)


def api_error_detail(response: httpx.Response) -> str:
    """The message and code of the API's error JSON ({"code": ..., "message": ...}), else the reason phrase."""
    try:
        error = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        error = None
    if isinstance(error, dict) and (error.get("message") or error.get("code") is not None):
        message = str(error.get("message") or "").strip()[:300]
        code = error.get("code")
        return f"{message} (code {code})" if code is not None else message
    return response.reason_phrase


class SmsProvider(ChannelProvider):
    channel = "SMS"

    def __init__(
        self,
        *,
        url: str,
        account: str,
        token: str,
        sender: str,
        max_segments: int = 1,
        min_priority: str = "HIGH",
        timeout_s: float = 15.0,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(policy, sleep=sleep, rng=rng)
        if min_priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {min_priority!r}; one of {', '.join(PRIORITY_RANK)}")
        # replace, not str.format: a URL may carry other braces, and only {account} is ours to fill.
        self._url = url.replace("{account}", account)
        self._account = account
        self._token = token
        self._sender = sender
        self._max_segments = max_segments
        self._min_priority = min_priority
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout_s, auth=httpx.BasicAuth(self._account, self._token), follow_redirects=False
            )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def skip_reason(self, job: DeliveryJob) -> str | None:
        """Why this job is not for SMS, or None; callers may ask before delivering to count a skip up front."""
        priority = job_priority(job)
        if PRIORITY_RANK[priority] < PRIORITY_RANK[self._min_priority]:
            return f"priority {priority} is below sms_min_priority {self._min_priority}"
        return None

    def form(self, job: DeliveryJob, phone: str) -> dict[str, str]:
        body = sms_text.fit(sms_text.render(job.payload), self._max_segments)
        return {"To": phone, "From": self._sender, "Body": body}

    async def send(self, job: DeliveryJob) -> None:
        if self._client is None:
            raise RuntimeError("SmsProvider.send before start()")
        # Policy first: a low-priority notification for a user without a phone is a skip, not a failure.
        reason = self.skip_reason(job)
        if reason is not None:
            raise BelowMinimumPriority(reason)
        phone = job.recipient.phone if job.recipient is not None else None
        if not phone:
            raise DeliveryError(f"user {job.user_id} has no phone number", retriable=False)
        what = f"SMS API {origin(self._url)}"
        try:
            response = await self._client.post(
                self._url, data=self.form(job, phone), headers={"Idempotency-Key": job.delivery_id}
            )
        except httpx.InvalidURL:
            raise DeliveryError("sms_url is not a valid URL", retriable=False) from None
        except httpx.HTTPError as exc:
            raise transport_error(what, exc, self._timeout_s) from None
        if response.is_success:
            return
        raise status_error(what, response, redact(api_error_detail(response), self._token))


def from_settings(settings: Settings, policy: RetryPolicy) -> SmsProvider | None:
    token = settings.sms_token.get_secret_value() if settings.sms_token is not None else ""
    if not (settings.sms_url and settings.sms_account and token and settings.sms_from):
        return None
    return SmsProvider(
        url=settings.sms_url,
        account=settings.sms_account,
        token=token,
        sender=settings.sms_from,
        max_segments=settings.sms_max_segments,
        min_priority=settings.sms_min_priority,
        timeout_s=settings.delivery_timeout_s,
        policy=policy,
    )
