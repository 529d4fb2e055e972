"""Sliding-window limiters (PROTOCOL.md section 8), driven by explicit timestamps."""

from __future__ import annotations

import math

import pytest

from mythos_rt.core.ratelimit import (
    ConnectionSlots,
    FrameGuard,
    FrameRefusal,
    KeyedSlidingWindow,
    SlidingWindow,
)


def test_the_101st_frame_within_a_minute_is_refused() -> None:
    window = SlidingWindow(100, 60.0)
    assert all(window.allow(i * 0.5) for i in range(100))
    assert not window.allow(59.9)
    assert window.allow(60.0)  # the event at t=0 has left the window


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        # limit 2 per 10 s; refused attempts do not extend the wait
        ([0, 1, 2, 3, 9.99], [True, True, False, False, False]),
        ([0, 1, 2, 9, 10], [True, True, False, False, True]),
        ([0, 1, 10, 10.5, 11], [True, True, True, False, True]),
        ([0, 5, 10, 15, 20], [True, True, True, True, True]),
        ([0, 0, 0, 10, 10, 10], [True, True, False, True, True, False]),
    ],
)
def test_sliding_window_sequences(attempts: list[float], expected: list[bool]) -> None:
    window = SlidingWindow(2, 10.0)
    assert [window.allow(t) for t in attempts] == expected


def test_refused_attempts_are_not_counted() -> None:
    window = SlidingWindow(3, 60.0)
    assert [window.allow(t) for t in (0, 1, 2)] == [True, True, True]
    assert not any(window.allow(3 + i * 0.01) for i in range(1000))
    assert window.allow(60.0)
    assert not window.allow(60.5)
    assert window.allow(61.0)


@pytest.mark.parametrize(
    ("events", "now", "expected"),
    [
        ([], 0.0, 0.0),
        ([0.0], 5.0, 0.0),
        ([0.0, 1.0], 0.0, 10.0),
        ([0.0, 1.0], 5.0, 5.0),
        ([0.0, 1.0], 9.5, 0.5),
        ([0.0, 1.0], 10.0, 0.0),
        ([0.0, 4.0], 12.0, 0.0),
        ([3.0, 4.0], 12.0, 1.0),
    ],
)
def test_retry_after(events: list[float], now: float, expected: float) -> None:
    window = SlidingWindow(2, 10.0)
    assert all(window.allow(t) for t in events)
    assert window.retry_after(now) == pytest.approx(expected)


def test_retry_after_does_not_record() -> None:
    window = SlidingWindow(1, 10.0)
    for _ in range(5):
        assert window.retry_after(0.0) == 0.0
    assert window.allow(0.0)
    assert window.retry_after(0.0) == 10.0


def test_zero_limit_refuses_everything() -> None:
    window = SlidingWindow(0, 10.0)
    assert not window.allow(0.0)
    assert window.retry_after(0.0) == math.inf


@pytest.mark.parametrize(("limit", "window_s"), [(-1, 10.0), (1, 0.0), (1, -5.0)])
def test_bad_arguments(limit: int, window_s: float) -> None:
    with pytest.raises(ValueError):
        SlidingWindow(limit, window_s)


def test_keys_are_independent() -> None:
    limiter = KeyedSlidingWindow(1, 60.0)
    assert limiter.allow("alice", 0.0)
    assert not limiter.allow("alice", 1.0)
    assert limiter.allow("bob", 1.0)
    assert limiter.allow(("bob", "say"), 1.0)
    assert limiter.retry_after("alice", 1.0) == 59.0
    assert limiter.retry_after("carol", 1.0) == 0.0


def test_retry_after_for_unknown_key_creates_nothing() -> None:
    limiter = KeyedSlidingWindow(1, 60.0)
    assert limiter.retry_after("ghost", 0.0) == 0.0
    assert len(limiter) == 0


def test_forget_resets_a_key() -> None:
    limiter = KeyedSlidingWindow(1, 60.0)
    assert limiter.allow("alice", 0.0)
    limiter.forget("alice")
    limiter.forget("never-seen")
    assert limiter.allow("alice", 1.0)


def test_memory_is_bounded() -> None:
    limiter = KeyedSlidingWindow(5, 60.0, max_keys=100)
    for i in range(10_000):
        limiter.allow(f"ip-{i}", i * 0.001)
    assert len(limiter) == 100


def test_least_recently_used_key_is_dropped_first() -> None:
    limiter = KeyedSlidingWindow(1, 60.0, max_keys=3)
    for key in ("a", "b", "c"):
        assert limiter.allow(key, 0.0)
    assert not limiter.allow("a", 1.0)  # a refused attempt still marks "a" as recently used
    assert limiter.allow("d", 2.0)  # pushes out "b"
    assert len(limiter) == 3
    assert limiter.retry_after("b", 2.0) == 0.0
    assert limiter.retry_after("a", 2.0) == 58.0
    assert limiter.retry_after("c", 2.0) == 58.0


# --- ConnectionSlots: connections counted before parsing -----------------------------------


def test_handshakes_per_address_are_bounded_and_given_back() -> None:
    slots = ConnectionSlots(max_total=100, max_pending_per_ip=2, exempt=frozenset())
    assert slots.open("10.0.0.1") is None
    assert slots.open("10.0.0.1") is None
    assert slots.open("10.0.0.1") == "per_ip"  # refused: not counted
    assert slots.open("10.0.0.2") is None  # another address is not affected
    slots.handshake_over("10.0.0.1")  # admitted: it no longer counts against its address
    assert slots.open("10.0.0.1") is None
    assert (slots.total, slots.pending("10.0.0.1")) == (4, 2)


def test_the_total_bounds_every_connection_admitted_or_not() -> None:
    slots = ConnectionSlots(max_total=2, max_pending_per_ip=10, exempt=frozenset())
    assert slots.open("a") is None
    slots.handshake_over("a")  # playing: still one of the total
    assert slots.open("b") is None
    assert slots.open("c") == "total"
    slots.close()
    assert slots.open("c") is None


def test_a_trusted_proxy_is_bounded_by_the_total_only() -> None:
    slots = ConnectionSlots(max_total=5, max_pending_per_ip=1, exempt=frozenset({"proxy"}))
    assert [slots.open("proxy") for _ in range(5)] == [None] * 5
    assert slots.open("proxy") == "total"


def test_addresses_are_forgotten_when_their_last_handshake_ends() -> None:
    slots = ConnectionSlots(max_total=10_000, max_pending_per_ip=1, exempt=frozenset())
    for i in range(1000):
        assert slots.open(f"ip-{i}") is None
        slots.handshake_over(f"ip-{i}")
        slots.close()
    assert slots.total == 0
    assert slots._pending == {}  # no memory kept for addresses that came and went

def test_frame_guard_refuses_with_the_wait_and_closes_after_refusals_in_a_row() -> None:
    guard = FrameGuard(2, 10.0, close_after=3)
    assert guard.check(0.0) is None and guard.check(1.0) is None
    assert guard.check(2.0) == FrameRefusal(8.0, close=False)
    assert guard.check(3.0) == FrameRefusal(7.0, close=False)
    assert guard.check(10.0) is None  # an allowed frame resets the count
    assert guard.check(10.5) == FrameRefusal(0.5, close=False)
    assert guard.check(10.75) == FrameRefusal(0.25, close=False)
    refusal = guard.check(10.875)
    assert refusal is not None and refusal.close
