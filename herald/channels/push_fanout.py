"""One push delivery reaches every device of the recipient: this sends to each subscription through the sender
that speaks its protocol (Web Push, FCM), removes the subscriptions their service reports gone, and decides
what the delivery as a whole came to.

A retry resends only to the subscriptions that failed retriably: the others already have the notification (or
are gone, or refused it for good), and a second copy would buzz a phone twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from herald.channels.base import ChannelProvider, DeliveryJob, Outcome, RetryPolicy
from herald.errors import DeliveryError, HeraldError
from herald.push_subscriptions import PushSubscriptionStore, subscription_key

log = logging.getLogger(__name__)

_OK = "ok"
_GONE = "gone"


class SubscriptionGone(HeraldError):
    """The push service says this subscription no longer exists (Web Push 404/410, FCM UNREGISTERED)."""


class PushSender(ABC):
    """Sends one notification to one subscription of one protocol."""

    kind: str  # "Web Push", "FCM": named in failure reasons

    @abstractmethod
    def handles(self, subscription: Mapping[str, Any]) -> bool: ...

    @abstractmethod
    async def send_one(self, job: DeliveryJob, subscription: Mapping[str, Any]) -> None:
        """Raise DeliveryError on failure, SubscriptionGone when the service dropped the subscription."""

    async def start(self) -> None:
        return

    async def close(self) -> None:
        return


def collapse_key(job: DeliveryJob) -> str:
    """The same for every version of one notification, so a device shows only the newest: 32 base64url chars
    (Web Push's Topic allows at most 32, APNs's collapse id 64 bytes)."""
    subject = f"digest:{job.user_id}" if job.is_digest else f"n:{job.payload.get('id', job.delivery_id)}"
    return base64.urlsafe_b64encode(hashlib.sha256(subject.encode()).digest()[:24]).decode()


def digest_count(job: DeliveryJob) -> int:
    digest = job.payload.get("digest")
    count = digest.get("count") if isinstance(digest, dict) else None
    return count if isinstance(count, int) else len(job.digest_items())


class PushFanOutProvider(ChannelProvider):
    channel = "PUSH"

    def __init__(
        self,
        senders: Sequence[PushSender],
        store: PushSubscriptionStore | None = None,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(policy, sleep=sleep, rng=rng)
        self.senders = tuple(senders)
        self.store = store
        self.removed = 0  # subscriptions dropped because their service reported them gone
        # delivery id -> subscription key -> what it came to: "ok", "gone", or the reason it was refused
        self._progress: dict[str, dict[str, str]] = {}

    async def start(self) -> None:
        for sender in self.senders:
            await sender.start()

    async def close(self) -> None:
        for sender in self.senders:
            await sender.close()

    async def deliver(self, job: DeliveryJob) -> Outcome:
        try:
            return await super().deliver(job)
        finally:
            self._progress.pop(job.delivery_id, None)

    def _targets(self, job: DeliveryJob) -> list[tuple[str, PushSender, Mapping[str, Any]]]:
        subscriptions = job.recipient.push_subscriptions if job.recipient is not None else ()
        targets: list[tuple[str, PushSender, Mapping[str, Any]]] = []
        for subscription in subscriptions:
            sender = next((s for s in self.senders if s.handles(subscription)), None)
            if sender is not None:
                targets.append((subscription_key(subscription), sender, subscription))
        return targets

    async def send(self, job: DeliveryJob) -> None:
        targets = self._targets(job)
        if not targets:
            held = len(job.recipient.push_subscriptions) if job.recipient is not None else 0
            if held:
                kinds = " or ".join(s.kind for s in self.senders)
                raise DeliveryError(
                    f"user {job.user_id} has {held} push subscriptions, none of them {kinds}", retriable=False
                )
            raise DeliveryError(f"user {job.user_id} has no push subscription", retriable=False)
        progress = self._progress.setdefault(job.delivery_id, {})
        pending = [t for t in targets if t[0] not in progress]
        results = await asyncio.gather(*(self._send_one(job, key, sender, sub) for key, sender, sub in pending))
        retriable = [r for r in results if isinstance(r, DeliveryError) and r.retriable]
        for (key, _, _), result in zip(pending, results, strict=True):
            if not (isinstance(result, DeliveryError) and result.retriable):
                progress[key] = result.reason if isinstance(result, DeliveryError) else result
        if retriable:
            waits = [r.retry_after_s for r in retriable if r.retry_after_s is not None]
            raise DeliveryError(
                "; ".join(r.reason for r in retriable), retriable=True, retry_after_s=max(waits) if waits else None
            )
        self._conclude(job, progress)

    def _conclude(self, job: DeliveryJob, progress: dict[str, str]) -> None:
        statuses = list(progress.values())
        if _OK in statuses:
            refused = [s for s in statuses if s not in (_OK, _GONE)]
            if refused:
                log.warning(
                    "push %s reached %s on some devices; others refused: %s", job.delivery_id, job.user_id, refused
                )
            return
        if all(s == _GONE for s in statuses):
            raise DeliveryError(
                f"every push subscription of user {job.user_id} is gone ({len(statuses)} removed)", retriable=False
            )
        raise DeliveryError("; ".join(s for s in statuses if s != _GONE), retriable=False)

    async def _send_one(
        self, job: DeliveryJob, key: str, sender: PushSender, subscription: Mapping[str, Any]
    ) -> str | DeliveryError:
        try:
            await sender.send_one(job, subscription)
        except DeliveryError as exc:
            return exc
        except SubscriptionGone as exc:
            await self._forget(job.user_id, key, str(exc))
            return _GONE
        return _OK

    async def _forget(self, user_id: str, key: str, why: str) -> None:
        self.removed += 1
        log.info("push subscription of %s is gone (%s); removing it", user_id, why)
        if self.store is None:
            return
        try:
            await self.store.remove(user_id, key)
        except HeraldError as exc:
            # The next delivery meets the same answer and tries again; failing this one would not help.
            log.warning("could not remove a gone push subscription of %s: %s", user_id, exc)
