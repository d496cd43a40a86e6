"""Secrets stay out of what Settings and URLs print (docs/architecture.md, Security)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from herald.config import load_settings
from herald.errors import ConfigError
from herald.kafka import client_security
from herald.redaction import redact_text, redact_url

SECRETS = {
    "jwt_secret": "JwtSecretValue-0123456789abcdef",
    "kafka_sasl_password": "SaslPasswordValue42",
    "smtp_url": "smtp://mailer:SmtpPasswordValue@mail.example:587",
    "webhook_secret": "WebhookSecretValue",
    "sms_token": "SmsTokenValue",
    "authjs_secret": "AuthJsSecretValue",
}
REDIS_PASSWORD = "RedisPasswordValue"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "rediss://default:p%40ss@host:6380/1?ssl_ca_certs=/ca.pem",
            "rediss://default:***@host:6380/1?ssl_ca_certs=/ca.pem",
        ),
        ("smtp://user:secret@mail:587?starttls=1", "smtp://user:***@mail:587?starttls=1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("redis://:pw@host:notaport/0", "redis://:***@host:notaport/0"),
        ("redis://:pw@[::1/0", "***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_replaces_every_secret() -> None:
    assert redact_text("a s1 b s2 c s1", ["s1", "s2", ""]) == "a *** b *** c ***"


def test_settings_never_print_a_secret() -> None:
    settings = load_settings(
        **{k: SecretStr(v) for k, v in SECRETS.items()},
        redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="herald",
    )
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        for secret in [*SECRETS.values(), REDIS_PASSWORD, "SmtpPasswordValue"]:
            assert secret not in shown
    assert "redis://:***@127.0.0.1:6379/0" in repr(settings)
    # The clients themselves get the real values.
    assert client_security(settings)["sasl_plain_password"] == SECRETS["kafka_sasl_password"]
    assert settings.redis_url.endswith(f":{REDIS_PASSWORD}@127.0.0.1:6379/0")


def test_client_security_per_protocol() -> None:
    plain = client_security(load_settings(kafka_bootstrap="k:9092"))
    assert plain == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    tls = client_security(load_settings(kafka_security_protocol="SSL"))
    assert tls["ssl_context"] is not None
    assert "sasl_mechanism" not in tls
    sasl = client_security(
        load_settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="u",
            kafka_sasl_password=SecretStr("p"),
        )
    )
    assert (sasl["sasl_mechanism"], sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == (
        "SCRAM-SHA-256",
        "u",
        "p",
    )
    assert "ssl_context" not in sasl


def test_sasl_without_credentials_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="kafka_sasl_username and kafka_sasl_password"):
        load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u")


def test_an_unreadable_ca_file_is_a_config_error_naming_the_file() -> None:
    settings = load_settings(kafka_security_protocol="SSL", kafka_ssl_cafile="/nonexistent/ca.pem")
    with pytest.raises(ConfigError, match=r"/nonexistent/ca\.pem"):
        client_security(settings)


def test_a_key_file_needs_a_certificate() -> None:
    with pytest.raises(ConfigError, match="kafka_ssl_keyfile needs kafka_ssl_certfile"):
        load_settings(kafka_ssl_keyfile="/k.pem")
