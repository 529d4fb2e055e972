"""JWT issue and verification with pinned algorithms and required claims.

The only module that imports ``jwt``.  Tokens are never logged: errors carry a reason, never the
token itself.
"""

from __future__ import annotations

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
) -> VerifiedToken:
    """Verify signature, ``exp``, ``aud`` and ``sub``; raise :class:`TokenError` otherwise."""
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
            leeway=leeway_s,
            options={"require": ["sub", "exp", "aud"], "verify_iat": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("Token expired") from None
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
    return VerifiedToken(user_id=sub, expires_at=float(claims["exp"]))
