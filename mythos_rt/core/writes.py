"""Writes to the store as data (attrs records), so rules can ask for them without I/O.

The store writer performs them in order, batched, one transaction per batch.  A rule that
promises a persisted change wraps its write in :class:`~mythos_rt.core.effects.Persist`; the
hub applies the change to its live state and sends the confirmation only after the commit.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class SaveRoom:
    """Where a player stands (coalesced: a newer room for the same player replaces this one)."""

    player_id: str
    room_id: str


@attrs.frozen
class SetMute:
    muter_id: str
    target_id: str
    expires_at: float | None  # wall-clock epoch seconds; None = permanent


@attrs.frozen
class DeleteMute:
    muter_id: str
    target_id: str


@attrs.frozen
class SetGlobalMute:
    target_id: str
    muted_by: str
    expires_at: float | None


@attrs.frozen
class DeleteGlobalMute:
    target_id: str


@attrs.frozen
class SetBan:
    """The player is refused at every login and handshake until ``until`` (None = for good)."""

    player_id: str
    until: float | None  # wall-clock epoch seconds
    reason: str | None = None


@attrs.frozen
class DeleteBan:
    player_id: str


Write = SaveRoom | SetMute | DeleteMute | SetGlobalMute | DeleteGlobalMute | SetBan | DeleteBan
