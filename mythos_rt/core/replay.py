"""A player's replay buffer: the events sent to them, kept for a resume (section 5).

Bounded by count and bytes; the oldest go first.  A resume cannot be exact, and is refused (the
client gets the normal connect burst), when it starts at or before the presence began (the
client never saw this presence's state) or below ``floor``, the newest evicted number.
"""

from __future__ import annotations

import collections


class ReplayBuffer:
    def __init__(self, max_events: int, max_bytes: int, start: int) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._entries: collections.deque[tuple[int, bytes]] = collections.deque()
        self._bytes = 0
        self.start = start  # the last number issued before the presence began
        self.floor = start

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, sequence: int, frame: bytes) -> None:
        self._entries.append((sequence, frame))
        self._bytes += len(frame)
        while self._entries and (
            len(self._entries) > self._max_events or self._bytes > self._max_bytes
        ):
            dropped, old = self._entries.popleft()
            self._bytes -= len(old)
            self.floor = dropped

    def since(self, sequence: int) -> list[bytes] | None:
        """Every frame after ``sequence``, or None when some of them are no longer held."""
        if sequence <= self.start or sequence < self.floor:
            return None
        return [frame for number, frame in self._entries if number > sequence]
