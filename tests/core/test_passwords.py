"""Password hashes: salted scrypt with the parameters in the stored string."""

from __future__ import annotations

import pytest

from mythos_rt.core.passwords import (
    MAX_PASSWORD_CHARS,
    hash_password,
    new_salt,
    password_problem,
    verify_password,
)

SALT = b"0123456789abcdef"
# Small parameters keep the table fast; the format carries them, so verify uses the same.
FAST = {"n": 16, "r": 1, "p": 1}


def test_the_stored_form_names_the_scheme_and_parameters() -> None:
    stored = hash_password("elder sign", SALT, **FAST)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16", "1", "1")
    assert "elder sign" not in stored and salt and digest


def test_the_right_password_verifies_and_others_do_not() -> None:
    stored = hash_password("elder sign", SALT, **FAST)
    assert verify_password("elder sign", stored)
    for wrong in ("elder sigN", "", "elder sign ", "ελder sign"):
        assert not verify_password(wrong, stored)


def test_the_default_parameters_round_trip() -> None:
    stored = hash_password("elder sign", new_salt())
    assert stored.split("$")[1:4] == ["16384", "8", "1"]
    assert verify_password("elder sign", stored)


def test_salts_make_equal_passwords_hash_differently() -> None:
    assert new_salt() != new_salt()
    assert hash_password("x" * 8, new_salt(), **FAST) != hash_password("x" * 8, new_salt(), **FAST)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain text",
        "bcrypt$16$1$1$c2FsdA==$aGFzaA==",
        "scrypt$16$1$1$c2FsdA==",
        "scrypt$sixteen$1$1$c2FsdA==$aGFzaA==",
        "scrypt$15$1$1$c2FsdA==$aGFzaA==",  # n must be a power of two
        f"scrypt${1 << 30}$8$1$c2FsdA==$aGFzaA==",  # bounded: a tampered row cannot eat memory
        "scrypt$16$1$1$not base64!$aGFzaA==",
        "scrypt$16$1$1$c2FsdA==$é",
    ],
)
def test_a_malformed_stored_hash_never_matches(stored: str) -> None:
    assert not verify_password("anything", stored)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("", "at least 8"),
        ("seven77", "at least 8"),
        ("eight888", None),
        ("x" * MAX_PASSWORD_CHARS, None),
        ("x" * (MAX_PASSWORD_CHARS + 1), "must not exceed"),
    ],
)
def test_password_rules(password: str, problem: str | None) -> None:
    found = password_problem(password)
    assert found is None if problem is None else (found is not None and problem in found)
