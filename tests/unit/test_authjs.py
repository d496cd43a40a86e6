"""Auth.js (NextAuth v5) session tokens: which ones Herald accepts, each way it refuses, and `authenticate` dispatch.

Tokens are built here as Auth.js builds them, with the key derived in this file (not by herald.authjs), so a wrong
salt or info string in the module would fail these tests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.jwk import OctKey
from pydantic import SecretStr

from herald.auth import authenticate, mint_token
from herald.authjs import decrypt_session_token, mint_authjs_token, session_token_from_cookies
from herald.config import Settings, load_settings
from herald.errors import AuthError

SECRET = "authjs-unit-test-secret-that-is-long-enough"
JWT_SECRET = "herald-unit-test-secret-with-enough-bytes"
PLAIN = "authjs.session-token"
SECURE = "__Secure-authjs.session-token"
BOTH = [PLAIN, SECURE]
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# Made by @auth/core 0.41.3 itself: `encode({token: {sub: "user-42", ...}, secret, salt, maxAge: 3600})`.
KNOWN_SECRET = "authjs-known-answer-secret-0123456789abcdef"
KNOWN_IAT = 1795886917
KNOWN = {
    PLAIN: "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoiUlA0Tl9hTGk2RlppZDE2d3lGREVVLU5naV80Q2pBczQwcnRIcT"
    "NNcmZaaU5XZzR4NHByOGYzWVZ4UWUxa3l5VmhTbUptTDlQVElaYzFwTEN1dS1wSGcifQ..cgkDnzq_Kl8aYaBtOxgnGA._5BLrMSuHkDAHqmeMK"
    "Tk-4ovHTWqmc2PLNuyrOAp3FiSGzUV6X6uu-aqwB1YDokMBRnT74Qh5K6iWy1mFRlR4c5alJ2vhtyffVESXnU7uSEyeO6dtJmk5ZXRavKKipo3f"
    "AGfngIbEVT-TqaA8jyWOdPVMz9yoUgp15RzTykMQfmLg80Fp_Z2wnSgxg02b7sR._lItpoFzAqhE0x2LUs7_EDY79eflfZuRlwYLsiDvKgU",
    SECURE: "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoiNmFtcEVJRmtHVjhTYTVZX0JNakE4am9rMUdTZ2dHLUFsdlk4OX"
    "M2bllXWXh1ai11NzlnX05TTXVrejZYNGZ5NlFlYVpFcWY1LXZRWkRqNHppSDZTM0EifQ..Xml0uGj7iJZtgUYCUrRYTg._dK2NwNXfrh1UgKBrd"
    "r8EF2On_GFMp_bQC6G5ijNw_kwg72OIPI3_B39ZxBnvrWQ-FQnhpPXc4EPSKEtqUewIBzMlDmUPFwoNj_5Yzv0kbforvksknQl_3-FnRQIJv6Dl"
    "EwgG7lh6XR33TS9dmgVLoeht9bIymd1Mq_N-6nf1lqQBlIgR9hE1BanPMNNqng1.eG4Yx8MXqmGkX6UZpUuIQqNJYjyyz6CcCWP5o6APZN8",
}


def _key(secret: str, salt: str, length: int = 64) -> bytes:
    """Auth.js's getDerivedEncryptionKey: HKDF-SHA256, salt = cookie name, info names the cookie too."""
    info = f"Auth.js Generated Encryption Key ({salt})".encode()
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt.encode(), info=info).derive(secret.encode())


def _claims(user: str | None = "user-1", *, now: datetime = NOW, ttl_s: int = 3600, **extra: Any) -> dict[str, Any]:
    issued = int(now.timestamp())
    claims: dict[str, Any] = {"name": "Ada", "email": "ada@example.com", "iat": issued, "exp": issued + ttl_s}
    if user is not None:
        claims["sub"] = user
    return {**claims, "jti": "5f0c8a9e-3a52-4c1b-9e7e-1b7a2d9c6f10", **extra}


def _encrypt(
    claims: Mapping[str, Any],
    *,
    secret: str = SECRET,
    salt: str = PLAIN,
    alg: str = "dir",
    enc: str = "A256CBC-HS512",
    key: bytes | None = None,
) -> str:
    key = key if key is not None else _key(secret, salt)
    body = json.dumps(claims, separators=(",", ":")).encode()
    return jwe.encrypt_compact({"alg": alg, "enc": enc}, body, OctKey.import_key(key), algorithms=[alg, enc])


def _decrypt(token: str, *, salts: list[str] | None = None, now: datetime = NOW, secret: str = SECRET) -> str:
    return decrypt_session_token(secret, token, salts=salts or [PLAIN], now=now).user_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _settings(*, authjs: bool = True) -> Settings:
    return load_settings(
        jwt_secret=SecretStr(JWT_SECRET),
        jwt_algorithm="HS256",
        authjs_secret=SecretStr(SECRET) if authjs else None,
        authjs_cookie_names=BOTH,
    )


# --- accepted ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("salt", BOTH)
def test_token_made_by_authjs_itself_is_accepted(salt: str) -> None:
    claims = decrypt_session_token(KNOWN_SECRET, KNOWN[salt], salts=BOTH, now=datetime.fromtimestamp(KNOWN_IAT, UTC))
    assert claims.user_id == "user-42"
    assert claims.expires_at == datetime.fromtimestamp(KNOWN_IAT + 3600, UTC)


def test_sub_is_the_user_and_exp_the_expiry() -> None:
    claims = decrypt_session_token(SECRET, _encrypt(_claims("user-1")), salts=[PLAIN], now=NOW)
    assert claims.user_id == "user-1"
    assert claims.expires_at == NOW + timedelta(hours=1)


def test_id_is_the_user_when_sub_is_absent() -> None:
    assert _decrypt(_encrypt(_claims(None, id="user-2"))) == "user-2"


def test_sub_wins_over_id() -> None:
    assert _decrypt(_encrypt(_claims("from-sub", id="from-id"))) == "from-sub"


@pytest.mark.parametrize("salt", BOTH)
def test_each_cookie_name_is_tried_as_salt(salt: str) -> None:
    assert _decrypt(_encrypt(_claims(), salt=salt), salts=BOTH) == "user-1"


def test_minted_token_round_trips() -> None:
    token = mint_authjs_token(SECRET, {"sub": "dev-user"}, cookie_name=SECURE, now=NOW, max_age_s=60)
    claims = decrypt_session_token(SECRET, token, salts=[SECURE], now=NOW)
    assert (claims.user_id, claims.expires_at) == ("dev-user", NOW + timedelta(seconds=60))


def test_expired_within_the_15s_leeway_is_accepted() -> None:
    assert _decrypt(_encrypt(_claims(now=NOW - timedelta(seconds=3610)))) == "user-1"


# --- refused ----------------------------------------------------------------------------------------------------


def _refusal(token: str, *, salts: list[str] | None = None, secret: str = SECRET) -> str:
    with pytest.raises(AuthError) as caught:
        _decrypt(token, salts=salts, secret=secret)
    return str(caught.value)


def _tamper(token: str, part: int) -> str:
    parts = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[part] + "=" * (-len(parts[part]) % 4)))
    raw[0] ^= 0x01
    parts[part] = _b64(bytes(raw))
    return ".".join(parts)


@pytest.mark.parametrize(("part", "name"), [(3, "ciphertext"), (4, "tag"), (2, "iv")])
def test_tampered_token_is_refused(part: int, name: str) -> None:
    assert "does not decrypt" in _refusal(_tamper(_encrypt(_claims()), part)), name


def test_wrong_secret_is_refused() -> None:
    assert "does not decrypt" in _refusal(_encrypt(_claims()), secret="some-other-secret-entirely")


def test_key_of_another_cookie_name_is_refused() -> None:
    assert "does not decrypt" in _refusal(_encrypt(_claims(), salt=SECURE), salts=[PLAIN])


def test_expired_beyond_the_leeway_is_refused() -> None:
    assert "expired" in _refusal(_encrypt(_claims(now=NOW - timedelta(seconds=3616))))


def test_token_without_exp_is_refused() -> None:
    claims = _claims()
    del claims["exp"]
    assert "'exp'" in _refusal(_encrypt(claims))


def test_token_issued_in_the_future_is_refused() -> None:
    assert "'iat'" in _refusal(_encrypt(_claims(now=NOW + timedelta(minutes=5))))


def test_token_not_yet_valid_is_refused() -> None:
    assert "'nbf'" in _refusal(_encrypt(_claims(nbf=int(NOW.timestamp()) + 300)))


def test_a256gcm_is_refused() -> None:
    # Auth.js can still decode A256GCM; Herald accepts only what Auth.js v5 mints.
    token = _encrypt(_claims(), enc="A256GCM", key=_key(SECRET, PLAIN, 32))
    assert "only alg 'dir' with enc 'A256CBC-HS512'" in _refusal(token)


def test_key_wrapping_alg_is_refused() -> None:
    token = _encrypt(_claims(), alg="A256KW", key=_key(SECRET, PLAIN, 32))
    assert "only alg 'dir'" in _refusal(token)


def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "enc": "A256CBC-HS512"}).encode())
    token = f"{header}..{_b64(b'0' * 16)}.{_b64(json.dumps(_claims()).encode())}."
    assert "only alg 'dir'" in _refusal(token)


def test_signed_jwt_is_refused() -> None:
    # Signed with the very key Auth.js would encrypt with: still not an Auth.js session token.
    token = jwt.encode(_claims(), _key(SECRET, PLAIN), algorithm="HS256")
    assert "signed JWT" in _refusal(token)


def test_unsigned_jwt_is_refused() -> None:
    header, payload = (_b64(json.dumps(part).encode()) for part in ({"alg": "none", "typ": "JWT"}, _claims()))
    token = f"{header}.{payload}."
    assert "signed JWT" in _refusal(token)


def test_token_without_sub_or_id_is_refused() -> None:
    assert "no user id" in _refusal(_encrypt(_claims(None)))


def test_empty_sub_and_id_are_refused() -> None:
    assert "no user id" in _refusal(_encrypt(_claims("", id="")))


def test_garbage_is_refused() -> None:
    assert "not base64url-encoded JSON" in _refusal("!!.a.b.c.d")


def test_errors_never_show_the_secret_or_the_token() -> None:
    good = _encrypt(_claims())
    tokens = [
        _tamper(good, 4),
        _encrypt(_claims(now=NOW - timedelta(days=1))),
        _encrypt(_claims(None)),
        _encrypt(_claims(), enc="A256GCM", key=_key(SECRET, PLAIN, 32)),
        jwt.encode(_claims(), _key(SECRET, PLAIN), algorithm="HS256"),
    ]
    for token in [*tokens, good]:
        for secret in (SECRET, "the-wrong-secret-for-this-check"):
            try:
                _decrypt(token, secret=secret)
            except AuthError as exc:
                shown = _messages(exc)
                assert secret not in shown
                assert token not in shown
                assert all(part not in shown for part in token.split(".") if len(part) > 8)


def _messages(exc: BaseException) -> str:
    """Every message in the exception chain, as a log line with its cause would show them."""
    shown: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        shown.append(f"{current!s} {current!r}")
        current = current.__cause__ or current.__context__
    return "\n".join(shown)


# --- cookies ----------------------------------------------------------------------------------------------------


def test_cookie_found_among_other_cookies() -> None:
    header = f'theme=dark; consent={{"ads": false}}; {PLAIN}=abc.def; bad name=1; lang=en'
    assert session_token_from_cookies(header, BOTH) == ("abc.def", PLAIN)


def test_secure_cookie_found() -> None:
    assert session_token_from_cookies(f"a=1; {SECURE}=tok", BOTH) == ("tok", SECURE)


def test_first_of_a_repeated_cookie_wins() -> None:
    # Browsers list the cookie with the most specific path first; Auth.js's parser keeps that one too.
    assert session_token_from_cookies(f"{PLAIN}=first; {PLAIN}=second", BOTH) == ("first", PLAIN)


def test_chunked_cookie_is_joined_in_index_order() -> None:
    token = _encrypt(_claims(), salt=SECURE)
    pieces = [token[i : i + 25] for i in range(0, len(token), 25)]
    listed = [f"{SECURE}.{i}={piece}" for i, piece in enumerate(pieces)]
    header = "; ".join(["x=1", *reversed(listed)])  # the browser's order is not the chunk order
    assert len(pieces) > 10  # indexes 10, 11, ... must sort after 9, not after 1
    assert session_token_from_cookies(header, BOTH) == (token, SECURE)
    assert _decrypt(token, salts=[SECURE]) == "user-1"


def test_chunked_cookie_with_a_gap_is_refused() -> None:
    with pytest.raises(AuthError, match=r"chunk authjs\.session-token\.1 is missing"):
        session_token_from_cookies(f"{PLAIN}.0=aaa; {PLAIN}.2=ccc", BOTH)


def test_no_session_cookie() -> None:
    assert session_token_from_cookies(f"a=1; {PLAIN}x=2; {PLAIN}.x=3; next-auth.session-token=4", BOTH) is None


# --- authenticate dispatch --------------------------------------------------------------------------------------


def _live_authjs(user: str = "user-1", salt: str = PLAIN) -> str:
    return _encrypt(_claims(user, now=datetime.now(UTC)), salt=salt)


def test_herald_jwt_goes_to_verify_token() -> None:
    settings = _settings()
    assert authenticate(settings, mint_token(settings, "herald-user"), None).user_id == "herald-user"


def test_bad_herald_jwt_is_refused_by_verify_token() -> None:
    settings = _settings()
    forged = jwt.encode(_claims(now=datetime.now(UTC)), "not-the-herald-secret-at-all-but-long", algorithm="HS256")
    with pytest.raises(AuthError, match="signature"):
        authenticate(settings, forged, None)


@pytest.mark.parametrize("salt", BOTH)
def test_authjs_token_in_auth_payload(salt: str) -> None:
    assert authenticate(_settings(), _live_authjs("web-user", salt), None).user_id == "web-user"


def test_authjs_token_without_secret_configured() -> None:
    with pytest.raises(AuthError, match="HERALD_AUTHJS_SECRET or AUTH_SECRET"):
        authenticate(_settings(authjs=False), _live_authjs(), None)


@pytest.mark.parametrize("name", BOTH)
def test_authjs_cookie_when_no_token(name: str) -> None:
    header = f"theme=dark; {name}={_live_authjs('cookie-user', name)}"
    assert authenticate(_settings(), None, header).user_id == "cookie-user"


def test_cookie_name_is_the_only_salt_tried() -> None:
    header = f"{PLAIN}={_live_authjs(salt=SECURE)}"
    with pytest.raises(AuthError, match="does not decrypt"):
        authenticate(_settings(), None, header)


def test_authjs_cookie_without_secret_configured() -> None:
    with pytest.raises(AuthError, match="HERALD_AUTHJS_SECRET or AUTH_SECRET"):
        authenticate(_settings(authjs=False), "", f"{PLAIN}={_live_authjs()}")


def test_token_wins_over_cookie() -> None:
    settings = _settings()
    header = f"{PLAIN}={_live_authjs('cookie-user')}"
    assert authenticate(settings, mint_token(settings, "token-user"), header).user_id == "token-user"


@pytest.mark.parametrize("header", [None, "", "theme=dark; lang=en"])
def test_nothing_to_authenticate_with(header: str | None) -> None:
    with pytest.raises(AuthError, match="missing token"):
        authenticate(_settings(), None, header)
