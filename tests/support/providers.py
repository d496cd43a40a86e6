"""A channel provider for outbox tests: records what it was asked to send and always succeeds."""

from __future__ import annotations

from herald.channels.base import ChannelProvider, DeliveryJob


class RecordingProvider(ChannelProvider):
    def __init__(self, channel: str) -> None:
        super().__init__()
        self.channel = channel  # type: ignore[misc]
        self.sent: list[DeliveryJob] = []

    async def send(self, job: DeliveryJob) -> None:
        self.sent.append(job)
