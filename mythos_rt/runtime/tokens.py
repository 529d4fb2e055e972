"""JWT issue and verification with pinned algorithms and required claims.

The only module that imports ``jwt``.  Tokens are never logged: errors carry a reason, never the
token itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs
import jwt

from mythos_rt.settings import Settings

# Asymmetric or "none" algorithms are never accepted: with an HMAC secret they would open the door
# to algorithm confusion (an RS256 public key used as an HS256 secret) or unsigned tokens.
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


class TokenError(Exception):
    """The token is not acceptable; ``str(exc)`` is safe to show the client."""


@attrs.frozen
class VerifiedToken:
    user_id: str
    expires_at: float


def issue_token(
    secret: str, user_id: str, *, ttl_s: float, audience: str, now: float, algorithm: str = "HS256"
) -> str:
    claims = {"sub": user_id, "aud": audience, "iat": int(now), "exp": int(now + ttl_s)}
    return jwt.encode(claims, secret, algorithm=algorithm)


def accepted_algorithms(configured: Sequence[str]) -> list[str]:
    return [alg.upper() for alg in configured if alg.upper() in HMAC_ALGORITHMS]


def verify_with_settings(token: str, secret: str, settings: Settings) -> VerifiedToken:
    """:func:`verify_token` with the algorithms, audience and limits of the settings."""
    return verify_token(
        token,
        secret,
        algorithms=settings.jwt_algorithms,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
        max_bytes=settings.max_token_bytes,
    )


def verify_token(
    token: str,
    secret: str,
    *,
    algorithms: Sequence[str],
    audience: str,
    leeway_s: float,
    max_bytes: int,
    now: float | None = None,
) -> VerifiedToken:
    """Verify signature, ``exp``, ``aud`` and ``sub``; raise :class:`TokenError` otherwise.

    ``leeway_s`` applies to ``nbf`` and ``iat`` (issued in the future).  ``exp`` has none: a
    token is valid until ``exp`` exactly (``now`` epoch seconds, default the wall clock), so a
    socket closed 4401 at ``exp`` cannot come straight back with the same token.
    """
    if len(token.encode("utf-8", "surrogatepass")) > max_bytes:
        raise TokenError("Token too large")
    allowed = accepted_algorithms(algorithms)
    if not allowed:
        raise TokenError("No acceptable token algorithm configured")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=allowed,
            audience=audience,
            # PyJWT reads the wall clock and would stretch exp by the leeway too; the time
            # claims are checked below instead, against ``now``.
            options={
                "require": ["sub", "exp", "aud"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidAudienceError:
        raise TokenError("Invalid token audience") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"Token is missing the '{exc.claim}' claim") from None
    except jwt.InvalidSignatureError:
        raise TokenError("Invalid token signature") from None
    except jwt.PyJWTError:
        raise TokenError("Invalid token") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenError("Token is missing the 'sub' claim")
    now = time.time() if now is None else now
    return VerifiedToken(user_id=sub, expires_at=_check_times(claims, now, leeway_s))


def _check_times(claims: dict[str, object], now: float, leeway_s: float) -> float:
    """``exp`` if the token is current: before ``exp`` exactly, and not from the future by more
    than the leeway (``nbf``, ``iat``: a client clock a little ahead is tolerated)."""
    exp = _number(claims["exp"])
    if now >= exp:
        raise TokenError("Token expired")
    for claim in ("nbf", "iat"):
        if claim in claims and _number(claims[claim]) > now + leeway_s:
            raise TokenError("Invalid token")
    return exp


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError("Invalid token")
    return float(value)
