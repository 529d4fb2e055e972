"""Password hashing: salted scrypt, parameters kept in the stored string (PROTOCOL.md section 18).

Pure and synchronous, but slow on purpose (tens of milliseconds): the server calls these from a
worker thread, never on the event loop.  A stored hash reads
``scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>``, so stronger parameters can be adopted
later without invalidating the hashes already stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
# n = 2**14, r = 8: 16 MiB of memory and about 50 ms per hash on a current core.
DEFAULT_N = 1 << 14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
# Parameters from a stored string are bounded, so a tampered row cannot make a login eat memory.
_MAX_N = 1 << 20
_MAX_R = 32
_MAX_P = 16

# Checked instead when a login names nobody (or a player without a password), so that answer
# takes as long as a wrong password.  Default parameters, so the cost is the same.
DUMMY_HASH = (
    "scrypt$16384$8$1$bXl0aG9zX3J0LWR1bW15IQ==$lxGCe0IjOvvvlcEt0cGwWe8QQ6EA8fFTaP0QOzIne2c="
)


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def hash_password(
    password: str, salt: bytes, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    """The stored form of ``password`` under ``salt``."""
    digest = _scrypt(password, salt, n, r, p)
    return "$".join((SCHEME, str(n), str(r), str(p), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` hashes to ``stored``; a malformed ``stored`` never matches."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None (the rule MythosMUD's client explains)."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"Password must be at least {MIN_PASSWORD_CHARS} characters long"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"Password must not exceed {MAX_PASSWORD_CHARS} characters"
    return None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem: scrypt needs 128 * n * r bytes; the default cap (32 MiB) would refuse larger n.
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r,
        dklen=HASH_BYTES,
    )


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return None
    return n, r, p, salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
