"""Firebase Cloud Messaging (HTTP v1 API) to native apps, authenticated with an OAuth2 token of a service account.

google-auth is synchronous: the token is refreshed in a worker thread, once for all concurrent sends, and reused
until it nears expiry (google-auth's `valid` already counts that margin).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import httpx
import orjson
from google.oauth2 import service_account

from herald.channels.base import DeliveryJob, RetryPolicy
from herald.channels.http_errors import status_error
from herald.channels.push_fanout import PushFanOutProvider, PushSender, SubscriptionGone, collapse_key, digest_count
from herald.errors import ConfigError, DeliveryError
from herald.push_subscriptions import PushSubscriptionStore

log = logging.getLogger(__name__)

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
HIGH_PRIORITIES = frozenset({"HIGH", "URGENT", "CRITICAL"})


def load_credentials(path: Path) -> tuple[service_account.Credentials, str]:
    """The service account's credentials and its project id."""
    try:
        info = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"fcm_service_account_file {path}: {exc}") from exc
    project_id = info.get("project_id") if isinstance(info, dict) else None
    if not project_id:
        raise ConfigError(f"fcm_service_account_file {path} has no project_id")
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[FCM_SCOPE]
        )
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"fcm_service_account_file {path} is not a service account key: {exc}") from exc
    return credentials, str(project_id)


def fcm_message(job: DeliveryJob, token: str) -> dict[str, Any]:
    """The v1 message: a notification the device shows by itself, and data (strings only) for the app."""
    group = collapse_key(job)
    if job.is_digest:
        count = digest_count(job)
        notification = {"title": f"{count} new notifications", "body": ""}
        data = {"digest": str(count), "deliveryId": job.delivery_id}
        priority = "NORMAL"
    else:
        body = job.payload
        text = str(body.get("text", ""))
        title = body.get("title")
        # A grouped notification has no title of its own: its rendered text is the headline.
        notification = {"title": str(title), "body": text} if title else {"title": text, "body": ""}
        data = {
            "id": str(body.get("id", "")),
            "version": str(body.get("version", "")),
            "deliveryId": job.delivery_id,
            "type": str(body.get("type", "")),
        }
        priority = str(body.get("priority", "NORMAL"))
    high = priority in HIGH_PRIORITIES
    return {
        "message": {
            "token": token,
            "notification": notification,
            "data": data,
            "android": {"collapse_key": group, "priority": "high" if high else "normal"},
            "apns": {"headers": {"apns-collapse-id": group, "apns-priority": "10" if high else "5"}},
        }
    }


def _error_code(response: httpx.Response) -> str | None:
    """FCM's own error code (UNREGISTERED, QUOTA_EXCEEDED, ...) from the error details, when it gave one."""
    try:
        details = response.json().get("error", {}).get("details", [])
    except (ValueError, AttributeError):
        return None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return None


class FcmSender(PushSender):
    kind = "FCM"

    def __init__(
        self,
        credentials: service_account.Credentials,
        project_id: str,
        *,
        endpoint: str = "https://fcm.googleapis.com",
        timeout_s: float = 15.0,
    ) -> None:
        self._credentials = credentials
        self._url = f"{endpoint.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._refreshing = asyncio.Lock()

    def handles(self, subscription: Mapping[str, Any]) -> bool:
        return "fcmToken" in subscription

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def access_token(self, *, refused: str | None = None) -> str:
        """A valid access token; `refused` is a token FCM just rejected, which is replaced even if not expired."""
        async with self._refreshing:
            current = self._credentials.token
            # A concurrent send may have refreshed the refused token already while this one waited on the lock.
            if self._credentials.valid and (refused is None or current != refused):
                return str(current)
            request = google.auth.transport.requests.Request()
            try:
                # google-auth gives the token request no timeout of its own.
                await asyncio.wait_for(asyncio.to_thread(self._credentials.refresh, request), self._timeout_s)
            except TimeoutError as exc:
                raise DeliveryError(f"FCM token endpoint silent for {self._timeout_s:g}s", retriable=True) from exc
            except google.auth.exceptions.TransportError as exc:
                raise DeliveryError(f"FCM token endpoint unreachable: {exc}", retriable=True) from exc
            except google.auth.exceptions.RefreshError as exc:
                retriable = bool(getattr(exc, "retryable", False))
                raise DeliveryError(f"FCM access token refused: {exc}", retriable=retriable) from exc
            return str(self._credentials.token)

    async def _post(self, message: dict[str, Any], token: str) -> httpx.Response:
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            return await self._client.post(
                self._url,
                content=orjson.dumps(message),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=UTF-8"},
            )
        except httpx.TransportError as exc:
            raise DeliveryError(f"FCM send: {type(exc).__name__} {exc}", retriable=True) from exc

    async def send_one(self, job: DeliveryJob, subscription: Mapping[str, Any]) -> None:
        message = fcm_message(job, str(subscription["fcmToken"]))
        token = await self.access_token()
        response = await self._post(message, token)
        if response.status_code == 401:
            # The token was revoked or the clock is off: one fresh token settles which.
            response = await self._post(message, await self.access_token(refused=token))
        status = response.status_code
        if status == 200:
            return
        code = _error_code(response)
        if code == "UNREGISTERED":
            raise SubscriptionGone(f"FCM answered {status} UNREGISTERED")
        raise status_error("FCM", response, f"{code or ''} {response.text[:200]}".strip())


class FcmProvider(PushFanOutProvider):
    """FCM only: one send per registration token of the recipient."""

    def __init__(
        self,
        sender: FcmSender,
        store: PushSubscriptionStore | None = None,
        policy: RetryPolicy | None = None,
        **options: Any,
    ) -> None:
        super().__init__([sender], store, policy, **options)
