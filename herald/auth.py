"""Client tokens (docs/architecture.md, Socket.IO protocol): Herald JWTs (`sub` is the user id, only the
configured algorithm) or Auth.js session tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from herald.config import Settings
from herald.errors import AuthError, ConfigError

# Claims a Herald token must carry; pyjwt then rejects a token without them instead of treating it as eternal.
_REQUIRED_CLAIMS = ["sub", "exp", "iat"]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    expires_at: datetime


def mint_token(settings: Settings, user_id: str, ttl_s: int = 3600, *, now: datetime | None = None) -> str:
    """A token for `user_id` valid for `ttl_s` seconds (dev tool and tests; production mints its own)."""
    if not user_id:
        raise AuthError("user id must not be empty")
    if ttl_s <= 0:
        raise AuthError(f"ttl_s must be positive, got {ttl_s}")
    issued = now or datetime.now(UTC)
    claims = {"sub": user_id, "iat": issued, "exp": issued + timedelta(seconds=ttl_s)}
    return jwt.encode(claims, _signing_key(settings), algorithm=settings.jwt_algorithm)


def verify_token(settings: Settings, token: str) -> TokenClaims:
    """Check signature, algorithm and expiry; raise AuthError saying which check failed."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _verifying_key(settings),
            # Exactly the configured algorithm: this is what stops `alg: none` and RS256/HS256 confusion.
            algorithms=[settings.jwt_algorithm],
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("token signature does not verify") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise AuthError(f"token algorithm not accepted (only {settings.jwt_algorithm})") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token lacks the {exc.claim!r} claim") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    user_id = claims["sub"]
    if not isinstance(user_id, str) or not user_id:
        raise AuthError("token subject must be a non-empty user id")
    return TokenClaims(user_id=user_id, expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC))


def authenticate(settings: Settings, token: str | None, cookie_header: str | None) -> TokenClaims:
    """Who a Socket.IO client is: its `auth.token` (Herald JWT or Auth.js JWE), else its Auth.js session cookie."""
    if token:
        # A JWE compact serialization has 5 parts, a JWS 3: the shape says which kind of token was sent.
        if token.count(".") == 4:
            return _authjs_claims(settings, token, settings.authjs_cookie_names)
        return verify_token(settings, token)
    if cookie_header:
        from herald.authjs import session_token_from_cookies  # noqa: PLC0415 - herald.authjs imports this module

        found = session_token_from_cookies(cookie_header, settings.authjs_cookie_names)
        if found is not None:
            cookie_token, cookie_name = found
            # The cookie's own name is its key's salt, so only that one is tried.
            return _authjs_claims(settings, cookie_token, [cookie_name])
    raise AuthError("missing token: connect with auth {token} or an Auth.js session cookie")


def _authjs_claims(settings: Settings, token: str, salts: list[str]) -> TokenClaims:
    from herald.authjs import decrypt_session_token  # noqa: PLC0415 - herald.authjs imports this module

    if settings.authjs_secret is None:
        raise AuthError("Auth.js session tokens need the Auth.js secret: set HERALD_AUTHJS_SECRET or AUTH_SECRET")
    return decrypt_session_token(settings.authjs_secret.get_secret_value(), token, salts=salts)


def _signing_key(settings: Settings) -> str | RSAPrivateKey:
    if settings.jwt_algorithm == "HS256":
        return settings.require_jwt_secret()
    return _private_key(settings)


def _verifying_key(settings: Settings) -> str | RSAPublicKey:
    if settings.jwt_algorithm == "HS256":
        return settings.require_jwt_secret()
    if settings.jwt_public_key_file is not None:
        key = serialization.load_pem_public_key(_read(settings.jwt_public_key_file, "jwt_public_key_file"))
        if not isinstance(key, RSAPublicKey):
            raise ConfigError(f"{settings.jwt_public_key_file} is not an RSA public key (RS256)")
        return key
    # A deployment that signs and verifies in one place need only configure the private key.
    return _private_key(settings).public_key()


def _private_key(settings: Settings) -> RSAPrivateKey:
    if settings.jwt_private_key_file is None:
        raise ConfigError("RS256 needs a private key: set HERALD_JWT_PRIVATE_KEY_FILE (PEM)")
    pem = _read(settings.jwt_private_key_file, "jwt_private_key_file")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise ConfigError(f"{settings.jwt_private_key_file} is not a PEM private key: {exc}") from exc
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(f"{settings.jwt_private_key_file} is not an RSA private key (RS256)")
    return key


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {setting} {path}: {exc.strerror}") from exc
