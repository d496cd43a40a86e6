"""Dev JWTs: what verify_token accepts and each way it refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from herald.auth import mint_token, verify_token
from herald.config import Settings, load_settings
from herald.errors import AuthError, ConfigError

SECRET = "unit-test-secret-with-enough-bytes-for-hs256"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def hs_settings() -> Settings:
    return load_settings(jwt_secret=SecretStr(SECRET), jwt_algorithm="HS256")


@pytest.fixture(scope="module")
def rsa_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    directory = tmp_path_factory.mktemp("keys")
    private, public = directory / "private.pem", directory / "public.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


@pytest.fixture
def rs_settings(rsa_files: tuple[Path, Path]) -> Settings:
    private, public = rsa_files
    return load_settings(jwt_algorithm="RS256", jwt_private_key_file=private, jwt_public_key_file=public)


def test_hs256_round_trip(hs_settings: Settings) -> None:
    claims = verify_token(hs_settings, mint_token(hs_settings, "user123", ttl_s=60))
    assert claims.user_id == "user123"
    assert timedelta(seconds=55) < claims.expires_at - datetime.now(UTC) <= timedelta(seconds=60)


def test_rs256_round_trip(rs_settings: Settings) -> None:
    assert verify_token(rs_settings, mint_token(rs_settings, "user123")).user_id == "user123"


def test_rs256_verifies_with_only_the_private_key(rs_settings: Settings) -> None:
    private_only = rs_settings.model_copy(update={"jwt_public_key_file": None})
    assert verify_token(private_only, mint_token(rs_settings, "u1")).user_id == "u1"


def test_bad_signature(hs_settings: Settings) -> None:
    other = hs_settings.model_copy(update={"jwt_secret": SecretStr("another-secret-of-sufficient-length!!")})
    with pytest.raises(AuthError, match="signature"):
        verify_token(hs_settings, mint_token(other, "user123"))


def test_tampered_payload(hs_settings: Settings) -> None:
    header, _, signature = mint_token(hs_settings, "user123").split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"admin","iat":1,"exp":9999999999}').rstrip(b"=").decode()
    with pytest.raises(AuthError, match="signature"):
        verify_token(hs_settings, f"{header}.{forged}.{signature}")


def test_expired(hs_settings: Settings) -> None:
    token = mint_token(hs_settings, "user123", ttl_s=60, now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(AuthError, match="expired"):
        verify_token(hs_settings, token)


def test_alg_none_rejected(hs_settings: Settings) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": "user123", "iat": 1, "exp": 9999999999}).encode())
    token = f"{header}.{payload}."
    with pytest.raises(AuthError, match="algorithm"):
        verify_token(hs_settings, token)


def test_algorithm_confusion_rejected(rs_settings: Settings, rsa_files: tuple[Path, Path]) -> None:
    """The classic attack: sign HS256 with the (public) RSA key as the HMAC secret."""
    public_pem = rsa_files[1].read_bytes()
    claims = {"sub": "admin", "iat": 1, "exp": 9999999999}
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = (
        base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=")
        + b"."
        + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    )
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(AuthError, match="algorithm"):
        verify_token(rs_settings, (signing_input + b"." + signature).decode())


def test_hs_token_rejected_by_rs_deployment(hs_settings: Settings, rs_settings: Settings) -> None:
    with pytest.raises(AuthError, match="algorithm"):
        verify_token(rs_settings, mint_token(hs_settings, "user123"))


def test_missing_sub(hs_settings: Settings) -> None:
    token = jwt.encode({"iat": 1, "exp": 9999999999}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="sub"):
        verify_token(hs_settings, token)


def test_missing_exp(hs_settings: Settings) -> None:
    token = jwt.encode({"sub": "u", "iat": 1}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="exp"):
        verify_token(hs_settings, token)


def test_garbage(hs_settings: Settings) -> None:
    with pytest.raises(AuthError, match="invalid token"):
        verify_token(hs_settings, "not.a.jwt")


def test_no_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="JWT secret"):
        mint_token(load_settings(jwt_secret=None, jwt_algorithm="HS256"), "user123")


def test_bad_arguments(hs_settings: Settings) -> None:
    with pytest.raises(AuthError):
        mint_token(hs_settings, "")
    with pytest.raises(AuthError):
        mint_token(hs_settings, "u", ttl_s=0)
