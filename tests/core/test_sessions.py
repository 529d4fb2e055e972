"""Retired sessions as a pure value (PROTOCOL.md v1.1 section 3): retire, expiry, bounds."""

from __future__ import annotations

import pytest

from mythos_rt.core.sessions import RetiredSessions

TTL_S = 600.0


@pytest.mark.parametrize(
    ("player_id", "session_id", "seconds_later", "retired"),
    [
        ("p1", "s1", 0.0, True),
        ("p1", "s1", TTL_S - 0.001, True),
        ("p1", "s1", TTL_S, False),  # ten minutes later the session id may be used again
        ("p1", "s2", 0.0, False),  # a new login (another session id) is not affected
        ("p2", "s1", 0.0, False),  # session ids are per player
        ("p1", None, 0.0, False),  # a socket without a session has none to be refused for
    ],
)
def test_retired_for_the_ttl(
    player_id: str, session_id: str | None, seconds_later: float, retired: bool
) -> None:
    sessions = RetiredSessions(TTL_S)
    sessions.retire("p1", "s1", 100.0)
    assert sessions.is_retired(player_id, session_id, 100.0 + seconds_later) is retired


def test_no_session_and_a_zero_ttl_retire_nothing() -> None:
    sessions = RetiredSessions(TTL_S)
    sessions.retire("p1", None, 0.0)
    off = RetiredSessions(0.0)
    off.retire("p1", "s1", 0.0)
    assert len(sessions) == len(off) == 0


def test_retiring_again_extends_the_retirement() -> None:
    sessions = RetiredSessions(TTL_S)
    sessions.retire("p1", "s1", 0.0)
    sessions.retire("p1", "s1", 500.0)
    assert sessions.is_retired("p1", "s1", 900.0)


def test_expired_entries_leave_memory() -> None:
    sessions = RetiredSessions(TTL_S)
    sessions.retire("p1", "s1", 0.0)
    sessions.retire("p1", "s2", 300.0)
    sessions.expire(600.0)
    assert len(sessions) == 1
    sessions.retire("p2", "s3", 900.0)  # retiring also sweeps what has expired
    assert len(sessions) == 1


def test_memory_is_bounded_oldest_first() -> None:
    sessions = RetiredSessions(TTL_S, max_entries=2)
    for n in range(3):
        sessions.retire("p1", f"s{n}", float(n))
    assert len(sessions) == 2
    assert not sessions.is_retired("p1", "s0", 3.0)
    assert sessions.is_retired("p1", "s2", 3.0)
