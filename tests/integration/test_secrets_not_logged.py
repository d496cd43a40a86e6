"""Every secret Herald is given (JWT secret, SASL password, Redis password, SMTP password, webhook secret, SMS
token, Auth.js secret) stays out of what its commands print and log, also when the services they reach refuse
them: stdout and stderr of real CLI runs against the local stack are searched for each value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from herald.config import Settings
from herald.redaction import redact_url

pytestmark = pytest.mark.integration

SECRETS = {
    "HERALD_JWT_SECRET": "JwtSecretNeverShown-0123456789abcdef",
    "HERALD_KAFKA_SASL_PASSWORD": "SaslPasswordNeverShown",
    "HERALD_WEBHOOK_SECRET": "WebhookSecretNeverShown",
    "HERALD_SMS_TOKEN": "SmsTokenNeverShown",
    "HERALD_AUTHJS_SECRET": "AuthJsSecretNeverShown",
}
REDIS_PASSWORD = "RedisPasswordNeverShown"
SMTP_PASSWORD = "SmtpPasswordNeverShown"


def _env(settings: Settings) -> dict[str, str]:
    redis_url = settings.redis_url.replace("redis://", f"redis://herald-nobody:{REDIS_PASSWORD}@", 1)
    assert redact_url(redis_url) != redis_url, "the stack's redis_url already carries credentials"
    return {
        **os.environ,
        **SECRETS,
        # Refused everywhere: the local stack's Redis has no such user and its Kafka listener no TLS.
        "HERALD_REDIS_URL": redis_url,
        "HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "HERALD_KAFKA_SASL_USERNAME": "herald",
        "HERALD_CONNECT_TIMEOUT_S": "3",
        "HERALD_SMTP_URL": f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:1",
        "HERALD_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "HERALD_SMS_URL": "http://127.0.0.1:9/sms",
        "HERALD_SMS_ACCOUNT": "AC1",
        "HERALD_SMS_FROM": "+15550000000",
    }


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "herald"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_no_secret_reaches_the_output_of_refused_commands(settings: Settings) -> None:
    env = _env(settings)
    runs = {
        "doctor": _run(env, "--verbose", "doctor", "--json"),
        "inbox": _run(env, "inbox", "--user", "u1"),
        "publish": _run(env, "publish", "--user", "u1", "--type", "POST_LIKED", "--actor", "u2"),
        "token": _run(env, "token", "--user", "u1"),
    }
    # Each was refused (or, for token, worked) for the reason we set up, so the search below saw real errors.
    assert runs["doctor"].returncode == 1
    assert ":***@" in runs["doctor"].stdout  # the Redis check names Redis by its redacted URL
    assert runs["inbox"].returncode == 2
    assert runs["publish"].returncode == 2
    assert "during the TLS handshake" in runs["publish"].stderr.replace("\n", " ")
    assert runs["token"].returncode == 0
    assert runs["token"].stdout.count(".") == 2  # a JWT, signed with the secret, never containing it
    secrets = [*SECRETS.values(), REDIS_PASSWORD, SMTP_PASSWORD]
    for name, run in runs.items():
        for secret in secrets:
            assert secret not in run.stdout, f"{name} printed a secret on stdout"
            assert secret not in run.stderr, f"{name} printed a secret on stderr"
