"""One exception base for Herald; errors carry their retry policy so callers need not guess."""

from __future__ import annotations


class HeraldError(Exception):
    """Base of every error Herald raises on purpose."""

    retriable: bool = False
    retry_after_s: float | None = None


class ConfigError(HeraldError):
    """Settings or a config file are invalid."""


class InvalidEventError(HeraldError, ValueError):
    """An event does not match the wire format; `field` names the offending field when one is to blame."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class BrokerUnavailableError(HeraldError):
    """Kafka could not be reached within the configured bound."""

    retriable = True


class StackError(HeraldError):
    """The local stack could not be started, stopped or inspected."""


class StoreError(HeraldError):
    """Redis refused or lost a state change.

    Retriable by default (Redis unreachable, timed out, failing over). `retriable=False` marks a refusal that
    would repeat on every try, such as a Lua script error or a key of the wrong type: the reader then
    dead-letters the batch after a few tries instead of retrying it forever.
    """

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class DeliveryError(HeraldError):
    """A channel could not deliver; `retriable` says whether trying again may help."""

    def __init__(self, reason: str, *, retriable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retriable = retriable
        self.retry_after_s = retry_after_s


class AuthError(HeraldError):
    """A token was missing, malformed, expired or not signed by us."""


class KafkaSecurityError(HeraldError):
    """Kafka answered but refused the connection's security: SASL credentials or mechanism, a certificate that
    does not verify, or plaintext spoken to a TLS listener. Retrying cannot help; the settings must change."""


class ClusterJoinError(HeraldError):
    """`herald run` was told to join a Ray cluster (ray_address) and could not."""
