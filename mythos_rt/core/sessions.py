"""Retired sessions (PROTOCOL.md v1.1 sections 3, 9, 15).

The MythosMUD web client reconnects after every close with the same ``session_id``.  A session
that was superseded (4000) or ended on purpose (quit, logout, rest) is therefore remembered for
a while, and a connect that carries it is refused 409 / 4409 "Session ended" instead of
ping-ponging with the newer tab or walking back in after ``quit``.

Pure: ``now`` is passed in (the hub's trio time).  Memory is bounded twice: entries expire
after ``ttl_s``, and at most ``max_entries`` are kept (the oldest go first).
"""

from __future__ import annotations

import attrs

MAX_RETIRED_SESSIONS = 100_000


@attrs.define
class RetiredSessions:
    ttl_s: float
    max_entries: int = MAX_RETIRED_SESSIONS
    # (player_id, session_id) -> retired until.  With one ttl and a clock that only rises,
    # insertion order is expiry order, so expiring is popping from the front.
    _until: dict[tuple[str, str], float] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self._until)

    def retire(self, player_id: str, session_id: str | None, now: float) -> None:
        """Retire a player's session (sockets without a session have nothing to retire)."""
        if session_id is None or self.ttl_s <= 0:
            return
        self.expire(now)
        key = (player_id, session_id)
        self._until.pop(key, None)  # re-inserted at the back: it expires last
        self._until[key] = now + self.ttl_s
        while len(self._until) > self.max_entries:
            del self._until[next(iter(self._until))]

    def is_retired(self, player_id: str, session_id: str | None, now: float) -> bool:
        if session_id is None:
            return False
        until = self._until.get((player_id, session_id))
        return until is not None and now < until

    def expire(self, now: float) -> None:
        while self._until:
            key, until = next(iter(self._until.items()))
            if until > now:
                return
            del self._until[key]
