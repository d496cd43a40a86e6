"""Reading smtp_url and email_from (herald/channels/email.py): ports, TLS modes, decoded credentials, and
errors that never repeat the URL, as it holds the password."""

from __future__ import annotations

import pytest

from herald.channels.email import SmtpTarget, envelope_sender, parse_smtp_url
from herald.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example", SmtpTarget("mail.example", 25)),
        ("smtp://mail.example?starttls=1", SmtpTarget("mail.example", 587, start_tls=True)),
        ("smtp://mail.example:2525?starttls=0", SmtpTarget("mail.example", 2525, start_tls=False)),
        ("smtps://mail.example", SmtpTarget("mail.example", 465, use_tls=True, start_tls=False)),
        (
            "smtp://me%40corp.example:p%3Aw%2F%25d@127.0.0.1:1025",
            SmtpTarget("127.0.0.1", 1025, username="me@corp.example", password="p:w/%d"),
        ),
        ("smtp://user:@mail.example", SmtpTarget("mail.example", 25, username="user", password="")),
    ],
)
def test_smtp_urls(url: str, expected: SmtpTarget) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://u:topsecret@mail.example", "smtp:// or smtps://"),
        ("smtp://u:topsecret@mail.example:99999", "invalid port"),
        ("smtp://u:topsecret@:25", "no host"),
        ("smtp://u:topsecret@mail.example?starttls=maybe", "starttls must be 1 or 0"),
        ("smtps://u:topsecret@mail.example?starttls=1", "TLS already"),
    ],
)
def test_bad_smtp_urls_are_named_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        parse_smtp_url(url)
    assert "topsecret" not in str(caught.value)


def test_the_password_is_not_in_the_repr() -> None:
    assert "topsecret" not in repr(parse_smtp_url("smtp://u:topsecret@mail.example"))


@pytest.mark.parametrize(
    ("email_from", "address"),
    [("Herald <notifications@localhost>", "notifications@localhost"), ("ops@herald.example", "ops@herald.example")],
)
def test_the_envelope_sender_is_the_bare_address(email_from: str, address: str) -> None:
    assert envelope_sender(email_from) == address


@pytest.mark.parametrize("email_from", ["", "Herald", "Herald <@>", "Herald <a@b@c>"])
def test_an_email_from_without_an_address_is_a_config_error(email_from: str) -> None:
    with pytest.raises(ConfigError, match="email_from"):
        envelope_sender(email_from)
