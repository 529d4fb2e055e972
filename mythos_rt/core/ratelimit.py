"""Sliding-window rate limiters with the clock passed in (PROTOCOL.md section 8).

Pure: callers pass ``now`` (trio's clock in the runtime, plain numbers in tests).
A window covers ``(now - window_s, now]``: an event exactly ``window_s`` old has left it.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Hashable

import attrs


class SlidingWindow:
    """At most `limit` events in any window of `window_s` seconds.

    Refused attempts are not recorded, so a client hammering a full window is let in again as
    soon as its oldest accepted event leaves the window.
    """

    # Every socket holds a few of these (its frame guard, its player's connect and command
    # windows): slots and a list rather than a dict and a deque (whose first block alone is
    # over 500 bytes) keep an idle socket small (issue 12).
    __slots__ = ("_events", "_limit", "_window_s")

    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 0 or window_s <= 0:
            raise ValueError(f"bad limit {limit} / window {window_s}")
        self._limit = limit
        self._window_s = window_s
        # Never longer than `limit`, because refused attempts are not appended; in time order.
        self._events: list[float] = []

    def allow(self, now: float) -> bool:
        """Record an event at ``now`` and return True, unless the window is full."""
        self._evict(now)
        if len(self._events) >= self._limit:
            return False
        self._events.append(now)
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until one more event would be allowed (0 if allowed now)."""
        self._evict(now)
        if len(self._events) < self._limit:
            return 0.0
        if not self._events:  # limit 0: nothing is ever allowed
            return math.inf
        return self._events[0] + self._window_s - now

    def _evict(self, now: float) -> None:
        horizon = now - self._window_s
        if self._events and self._events[0] <= horizon:
            del self._events[: bisect.bisect_right(self._events, horizon)]


class KeyedSlidingWindow:
    """One `SlidingWindow` per key (player, IP, channel) with at most `max_keys` keys held.

    Keys are kept in least-recently-used order. Past `max_keys` the least recently used key is
    dropped: its window emptied before anyone else's, so dropping it forgets nothing in normal
    operation, and under a flood of fresh keys (IP rotation) memory stays bounded while the only
    cost is that the oldest key's limit starts over.
    """

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError(f"bad max_keys {max_keys}")
        self._limit = limit
        self._window_s = window_s
        self._max_keys = max_keys
        self._windows: OrderedDict[Hashable, SlidingWindow] = OrderedDict()
        # Answers retry_after for unknown keys; never recorded into, so it stays empty.
        self._empty = SlidingWindow(limit, window_s)

    def allow(self, key: Hashable, now: float) -> bool:
        """Record an event for ``key`` at ``now`` and return True, unless its window is full."""
        return self._window_for(key).allow(now)

    def retry_after(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may have one more event (0 if allowed now)."""
        return self._windows.get(key, self._empty).retry_after(now)

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s history (e.g. when its player's presence ends)."""
        self._windows.pop(key, None)

    def __len__(self) -> int:
        return len(self._windows)

    def _window_for(self, key: Hashable) -> SlidingWindow:
        window = self._windows.get(key)
        if window is not None:
            self._windows.move_to_end(key)
            return window
        window = self._windows[key] = SlidingWindow(self._limit, self._window_s)
        while len(self._windows) > self._max_keys:
            self._windows.popitem(last=False)
        return window


class ConnectionSlots:
    """TCP connections at once, counted before a byte of the request is parsed.

    Two bounds: every connection on the listener (``max_total``), and the connections from one
    address that have not finished their handshake yet (``max_pending_per_ip``).  Admitted
    sockets no longer count against their address: many players may share one (a household, a
    campus NAT), but none of them needs more than a few handshakes at a time.  Addresses in
    ``exempt`` (trusted proxies, which carry many clients) are bounded by the total only.
    """

    def __init__(self, max_total: int, max_pending_per_ip: int, exempt: frozenset[str]) -> None:
        self._max_total = max_total
        self._max_pending_per_ip = max_pending_per_ip
        self._exempt = exempt
        self.total = 0
        self._pending: dict[str, int] = {}

    def open(self, ip: str) -> str | None:
        """Take a slot for a new connection from ``ip``; the reason it is refused, or None."""
        if self.total >= self._max_total:
            return "total"
        pending = self._pending.get(ip, 0)
        if ip not in self._exempt and pending >= self._max_pending_per_ip:
            return "per_ip"
        self.total += 1
        self._pending[ip] = pending + 1
        return None

    def handshake_over(self, ip: str) -> None:
        """The connection from ``ip`` finished its handshake (admitted, refused or timed out)."""
        left = self._pending[ip] - 1
        if left:
            self._pending[ip] = left
        else:
            del self._pending[ip]

    def close(self) -> None:
        self.total -= 1

    def pending(self, ip: str) -> int:
        return self._pending.get(ip, 0)


@attrs.frozen
class FrameRefusal:
    """A frame over the per-connection limit: refused with the wait, or the last straw."""

    retry_after_s: float
    close: bool  # ABUSE_CLOSE_AFTER refusals in a row: close the connection (1008)


class FrameGuard:
    """The per-connection frame limit and its abuse rule (section 8), for every kind of socket
    (a WebSocket frame, a telnet line): over the limit a frame is refused with the wait, and
    ``close_after`` refusals in a row close the connection."""

    __slots__ = ("_close_after", "_refused_in_a_row", "_window")

    def __init__(self, limit: int, window_s: float, close_after: int) -> None:
        self._window = SlidingWindow(limit, window_s)
        self._close_after = close_after
        self._refused_in_a_row = 0

    def check(self, now: float) -> FrameRefusal | None:
        if self._window.allow(now):
            self._refused_in_a_row = 0
            return None
        self._refused_in_a_row += 1
        close = self._refused_in_a_row >= self._close_after
        return FrameRefusal(self._window.retry_after(now), close)
