"""Token verification around its time claims (PROTOCOL.md v1.1 section 2): exp has no leeway."""

from __future__ import annotations

import jwt
import pytest

from mythos_rt.runtime.tokens import TokenError, issue_token, verify_token

SECRET = "token-test-secret-" + "t" * 32
AUDIENCE = "fastapi-users:auth"
ISSUED = 1_800_000_000.0
TTL_S = 60


def verify_at(now: float, token: str, leeway_s: float = 10.0) -> float:
    verified = verify_token(
        token,
        SECRET,
        algorithms=["HS256"],
        audience=AUDIENCE,
        leeway_s=leeway_s,
        max_bytes=8192,
        now=now,
    )
    return verified.expires_at


def token_issued_at(issued: float) -> str:
    return issue_token(SECRET, "user-1", ttl_s=TTL_S, audience=AUDIENCE, now=issued)


@pytest.mark.parametrize(
    ("seconds_after_issue", "valid"),
    [
        (0, True),
        (TTL_S - 0.001, True),  # valid until exp ...
        (TTL_S, False),  # ... exactly: the second a live socket closes 4401, the handshake refuses
        (TTL_S + 5, False),  # v1 re-admitted this for 10 s
    ],
)
def test_exp_has_no_leeway(seconds_after_issue: float, valid: bool) -> None:
    token = token_issued_at(ISSUED)
    if valid:
        assert verify_at(ISSUED + seconds_after_issue, token) == ISSUED + TTL_S
    else:
        with pytest.raises(TokenError, match="Token expired"):
            verify_at(ISSUED + seconds_after_issue, token)


def test_exp_has_no_leeway_even_with_a_large_leeway_setting() -> None:
    token = token_issued_at(ISSUED)
    with pytest.raises(TokenError, match="Token expired"):
        verify_at(ISSUED + TTL_S, token, leeway_s=3600)


def claims_token(**claims: object) -> str:
    base: dict[str, object] = {"sub": "user-1", "aud": AUDIENCE, "exp": ISSUED + TTL_S}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("claims", "valid"),
    [
        ({"nbf": ISSUED + 10}, True),  # a client clock 10 s ahead is tolerated
        ({"nbf": ISSUED + 11}, False),
        ({"iat": ISSUED + 10}, True),
        ({"iat": ISSUED + 11}, False),
        ({"exp": "soon"}, False),
        ({"nbf": True}, False),
    ],
)
def test_nbf_and_iat_have_the_leeway(claims: dict[str, object], valid: bool) -> None:
    token = claims_token(**claims)
    if valid:
        assert verify_at(ISSUED, token) == ISSUED + TTL_S
    else:
        with pytest.raises(TokenError, match="Invalid token"):
            verify_at(ISSUED, token)
