"""Keeps secrets out of what Herald prints and logs: passwords in URLs (docs/architecture.md, Security)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"


def redact_url(url: str) -> str:
    """The URL with its password (redis://:pw@host, smtp://user:pw@host) replaced by ***; other URLs unchanged."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        # Not parseable as a URL (a bad port, say): it may still hold a secret, so show nothing of its netloc.
        return REDACTED
    if not password:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostport}"))


def redact_text(text: str, secrets: list[str]) -> str:
    """`text` with every non-empty secret in it replaced by ***; for messages that quote a library's error."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
