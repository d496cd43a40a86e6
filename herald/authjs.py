"""Auth.js (NextAuth v5) session tokens: a JWE (`dir`, A256CBC-HS512) under a key HKDF-derived from AUTH_SECRET.

Only decryption and claim checks live here; `herald.auth.authenticate` decides when a token is an Auth.js one.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from http.cookies import CookieError, SimpleCookie
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe, jwk
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry

from herald.auth import TokenClaims
from herald.errors import AuthError

ALG = "dir"
ENC = "A256CBC-HS512"
DEFAULT_COOKIE_NAME = "authjs.session-token"
# Auth.js's own clock tolerance when it decodes a session token.
DEFAULT_LEEWAY_S = 15
# Auth.js's default session maxAge (30 days); only `mint_authjs_token` uses it.
DEFAULT_MAX_AGE_S = 30 * 24 * 3600

_KEY_BYTES = 64  # A256CBC-HS512 takes a 512-bit key: 256 for HMAC, 256 for AES
# Exactly one alg and one enc: this is what refuses `none`, key wrapping, A256GCM and compression (`zip`).
_REGISTRY = jwe.JWERegistry(algorithms=[ALG, ENC])


def decrypt_session_token(
    secret: str,
    token: str,
    *,
    salts: Sequence[str],
    now: datetime | None = None,
    leeway_s: int = DEFAULT_LEEWAY_S,
) -> TokenClaims:
    """Decrypt with the key of each salt (cookie name) in turn, then check times and the user id."""
    _check_header(token)
    claims = _decrypt(secret, token, salts)
    moment = int((now or datetime.now(UTC)).timestamp())
    try:
        JWTClaimsRegistry(now=moment, leeway=leeway_s, exp={"essential": True}).validate(claims)
    except ExpiredTokenError as exc:
        raise AuthError("Auth.js token expired") from exc
    except MissingClaimError as exc:
        raise AuthError(f"Auth.js token lacks the {exc.claim!r} claim") from exc
    except ClaimError as exc:
        raise AuthError(f"Auth.js token claim {exc.claim!r} is invalid: {exc.description}") from exc
    return TokenClaims(user_id=_user_id(claims), expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC))


def session_token_from_cookies(cookie_header: str, names: Sequence[str]) -> tuple[str, str] | None:
    """(token, cookie name) of the first of `names` present, whole or chunked as `<name>.0`, `<name>.1`, ..."""
    cookies = _parse_cookie_header(cookie_header)
    for name in names:
        if cookies.get(name):
            return cookies[name], name
        chunks = _chunks(cookies, name)
        if chunks:
            return "".join(chunks), name
    return None


def mint_authjs_token(
    secret: str,
    claims: Mapping[str, Any],
    *,
    cookie_name: str = DEFAULT_COOKIE_NAME,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    now: datetime | None = None,
) -> str:
    """A session token encrypted as Auth.js's `encode` does it (dev tool and tests; Auth.js mints the real ones)."""
    raw = derive_key(secret, cookie_name)
    issued = int((now or datetime.now(UTC)).timestamp())
    # Auth.js sets iat/exp/jti after the session's own claims, so these win.
    payload = {**claims, "iat": issued, "exp": issued + max_age_s, "jti": str(uuid.uuid4())}
    # Auth.js names the key by its RFC 7638 thumbprint (SHA-512 for a 512-bit key).
    kid = jwk.thumbprint({"kty": "oct", "k": _b64url(raw)}, "sha512")
    header = {"alg": ALG, "enc": ENC, "kid": kid}
    body = json.dumps(payload, separators=(",", ":")).encode()
    return jwe.encrypt_compact(header, body, OctKey.import_key(raw), registry=_REGISTRY)


@lru_cache(maxsize=16)
def derive_key(secret: str, salt: str) -> bytes:
    """HKDF-SHA256 of the secret, salted with the cookie name, as Auth.js derives its encryption key."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=_KEY_BYTES,
        salt=salt.encode(),
        info=f"Auth.js Generated Encryption Key ({salt})".encode(),
    )
    return hkdf.derive(secret.encode())


def _check_header(token: str) -> None:
    # Checked before any key is tried so a token of the wrong kind gets a reason, not "does not decrypt".
    parts = token.split(".")
    if len(parts) == 3:
        raise AuthError("not an Auth.js session token: it is a signed JWT, Auth.js session tokens are encrypted (JWE)")
    if len(parts) != 5:
        raise AuthError("not an Auth.js session token: expected a JWE of 5 dot-separated parts")
    segment = parts[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    # RecursionError: a header of a few thousand nested brackets (found by fuzzing) is garbage too.
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise AuthError("Auth.js token header is not base64url-encoded JSON") from exc
    if not isinstance(header, dict) or header.get("alg") != ALG or header.get("enc") != ENC:
        raise AuthError(f"Auth.js token encryption not accepted: only alg {ALG!r} with enc {ENC!r}")


def _decrypt(secret: str, token: str, salts: Sequence[str]) -> dict[str, Any]:
    for salt in salts:
        try:
            plaintext = jwe.decrypt_compact(token, OctKey.import_key(derive_key(secret, salt)), registry=_REGISTRY)
        # binascii.Error (a ValueError) escapes joserfc for a segment that is not base64url.
        except (JoseError, ValueError):
            continue  # a wrong key fails the authentication tag; the next salt may be the right one
        try:
            claims = json.loads(plaintext.plaintext or b"")
        except (ValueError, RecursionError) as exc:
            raise AuthError("Auth.js token payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise AuthError("Auth.js token payload is not a JSON object")
        return claims
    raise AuthError(
        "Auth.js token does not decrypt: it is malformed or altered, or was made with another "
        "secret (HERALD_AUTHJS_SECRET/AUTH_SECRET) or cookie name (HERALD_AUTHJS_COOKIE_NAMES)"
    )


def _user_id(claims: Mapping[str, Any]) -> str:
    # Auth.js puts the user id in `sub`; apps whose jwt callback rewrites the token often keep only `id`.
    for claim in ("sub", "id"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    raise AuthError("Auth.js token carries no user id: neither 'sub' nor 'id' is a non-empty string")


def _parse_cookie_header(header: str) -> dict[str, str]:
    jar: dict[str, str] = {}
    # One pair at a time: SimpleCookie gives up on the whole header at the first pair it dislikes (a JSON
    # value or a space from some other app's cookie). Splitting on ";" is exact, as RFC 6265 forbids it in values.
    for pair in header.split(";"):
        parsed: SimpleCookie = SimpleCookie()
        try:
            parsed.load(pair)
        except CookieError:
            continue
        for name, morsel in parsed.items():
            # The first of a repeated name wins: browsers send the most specific path first, and Auth.js keeps it.
            jar.setdefault(name, morsel.value)
    return jar


def _chunks(cookies: Mapping[str, str], name: str) -> list[str]:
    indexed: dict[int, str] = {}
    for key, value in cookies.items():
        prefix, _, index = key.rpartition(".")
        if prefix == name and index.isascii() and index.isdigit():
            indexed[int(index)] = value
    if indexed and sorted(indexed) != list(range(len(indexed))):
        missing = min(set(range(max(indexed) + 1)) - set(indexed))
        raise AuthError(f"Auth.js session cookie {name!r} is chunked but chunk {name}.{missing} is missing")
    return [indexed[i] for i in sorted(indexed)]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
