"""A player's replay buffer: the events sent to them, kept for a resume (section 5).

Bounded by count and bytes; the oldest go first.  A resume cannot be exact, and is refused (the
client gets the normal connect burst), when it starts at or before the presence began (the
client never saw this presence's state) or below ``floor``, the newest evicted number.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any


class ReplayBuffer:
    """One ring of number, frame, number, frame, ... rather than one of (number, frame) pairs:
    an append is then no allocation at all (the int and the bytes are shared with every other
    recipient of the event), so the hub's per-recipient work creates nothing for the cyclic
    garbage collector to track, and an idle player holds one small ring (docs/PERFORMANCE.md)."""

    def __init__(self, max_events: int, max_bytes: int, start: int) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        # Any: the ring alternates int and bytes, which no deque type says (and casts cost a
        # call per item on the hot path).
        self._ring: collections.deque[Any] = collections.deque()
        self._bytes = 0
        self.start = start  # the last number issued before the presence began
        self.floor = start

    def __len__(self) -> int:
        return len(self._ring) // 2

    def append(self, sequence: int, frame: bytes) -> None:
        ring = self._ring
        ring.append(sequence)
        ring.append(frame)
        self._bytes += len(frame)
        while len(ring) > 2 * self._max_events or self._bytes > self._max_bytes:
            self.floor = ring.popleft()
            self._bytes -= len(ring.popleft())

    def since(self, sequence: int) -> list[bytes] | None:
        """Every frame after ``sequence``, or None when some of them are no longer held."""
        if sequence <= self.start or sequence < self.floor:
            return None
        ring = self._ring
        numbers = itertools.islice(ring, 0, None, 2)
        frames = itertools.islice(ring, 1, None, 2)
        return [frame for number, frame in zip(numbers, frames, strict=True) if number > sequence]
