"""The hub: sole owner of the live world state on this instance.

Connections call the hub's methods directly.  Every method is synchronous, so under Trio's
cooperative scheduling each call is atomic: no locks, no interleaving inside a state change.
The hub never awaits anything but its own timers (:meth:`serve`); it hands frames to outboxes
with non-blocking puts, so a slow socket can never stall a room.

Flow of one event: rules return an :class:`~mythos_rt.core.effects.Emit` → the hub stamps the
next sequence number, encodes the envelope and the WebSocket frame once → the same bytes go into
every recipient socket's outbox → each round, and after each frame received, the broadcaster
writes each outbox straight into its socket; what the kernel does not take, that socket's sender
writes.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Protocol

import attrs
import trio

from mythos_rt.core import handshake
from mythos_rt.core.chat import CHANNELS, ChatLimiter, audience_here
from mythos_rt.core.cluster import (
    ClusterMessageError,
    Delivery,
    PartyChange,
    PartyCommand,
    PartyRecord,
    PresenceRecord,
)
from mythos_rt.core.commands import CommandContext, dispatch
from mythos_rt.core.commands.movement import move
from mythos_rt.core.commands.session import logout_effects, rest_tick, stand_up
from mythos_rt.core.commands.social import party as party_command
from mythos_rt.core.commands.social import respond_to_follow, respond_to_party_invite
from mythos_rt.core.effects import (
    NOT_SAVED,
    AdminAction,
    Disconnect,
    Effect,
    Emit,
    FindPlayer,
    PartyAtOwner,
    Persist,
    RestCountdown,
    ShutdownCountdown,
    reply,
)
from mythos_rt.core.mythos_clock import mythos_time
from mythos_rt.core.presence import Presence, Presences
from mythos_rt.core.protocol import FollowResponse, PartyInviteResponse, encode_event
from mythos_rt.core.ratelimit import KeyedSlidingWindow
from mythos_rt.core.replay import ReplayBuffer
from mythos_rt.core.rollback import all_or_nothing
from mythos_rt.core.sessions import RetiredSessions
from mythos_rt.core.social import (
    KnownPlayer,
    Party,
    Request,
    Social,
    cancel_requests,
    disband,
    follow_state,
    leave_party,
    stop_following,
)
from mythos_rt.core.social import end_presence as end_social_presence
from mythos_rt.core.views import (
    game_state_payload,
    occupants_payload,
    presence_event_payload,
    room_payload,
)
from mythos_rt.core.world import World
from mythos_rt.core.writes import DeleteGlobalMute, SaveRoom, SetGlobalMute, Write
from mythos_rt.runtime.broadcast import Broadcaster
from mythos_rt.runtime.logs import log_admin_action, log_event
from mythos_rt.runtime.metrics import CounterChild, Metrics
from mythos_rt.runtime.persistence import StoreWriter
from mythos_rt.runtime.store import MuteRecords, PlayerRecord, StoreError
from mythos_rt.runtime.timers import Timers
from mythos_rt.runtime.wsio import Outbox, text_frame
from mythos_rt.settings import Settings

log = logging.getLogger(__name__)

_NO_REPLAY: Mapping[str, ReplayBuffer] = {}  # ephemeral events are not kept for a resume

SUPERSEDED = (4000, "New game session established")
# Where players are and who is in a room: every instance derives these for its own players from
# its replicas (upsert_replica, drop_replica), so they are never forwarded; forwarding them too
# would tell remote players twice, or in an order that contradicts their own occupant lists.
PRESENCE_EVENTS = frozenset(
    {"player_entered_game", "player_left_game", "room_occupants", "player_entered", "player_left"}
)
# Events a receiver does not get from a player they muted (section 10), when another instance
# delivers them; the rules apply the same mutes for the players this instance holds.
MUTABLE_EVENTS = frozenset({"chat_message", "follow_request", "party_invite"})
# Not kept for a resume: a tick is stale by the time anyone could replay it.
EPHEMERAL_EVENTS = frozenset({"game_tick"})
# Not an event for clients: a global mute (or its end) committed on another instance, for the
# instance holding its target (only the speaker's instance can refuse their lines).
GLOBAL_MUTE = "mythos_rt.global_mute"
# Not an event for clients either: a logout asked of another instance (the HTTP API), for the
# instance holding the player's sockets.
LOGOUT = "mythos_rt.logout"
# Not an event for clients: an admin's kick or ban of a player another instance holds, for that
# instance to close the player's sockets ({code, reason}).
KICK = "mythos_rt.kick"
SWEEP_INTERVAL_S = 10.0
# A party change that reached an instance no longer owning that party (or no longer the actor's).
PARTY_MOVED = "The party is changing hands. Please try again."
# A rule that raised: its changes were undone (core/rollback.py), the fault logged.
RULE_FAILED = "Something went wrong with that command; nothing was changed. Please try again."


# Name look-ups waiting for the store (commands naming a player this instance has not met).
# Overflow policy: the command is answered at once as if the store did not know the name.
MAX_PENDING_LOOKUPS = 256


@attrs.frozen
class Lookup:
    """A command held back until the store has been asked about ``name``."""

    socket: SocketHandle
    command: str
    args: tuple[str, ...]
    name: str


class Peers(Protocol):
    """The other instances, as the hub sees them (``runtime/cluster.py``); None when alone."""

    def forward(self, delivery: Delivery) -> None: ...
    def forward_chat(self, event: Emit, sender: Presence) -> None: ...
    def presences_changed(self, records: list[PresenceRecord], gone: list[str]) -> None: ...
    def session_retired(self, player_id: str, session_id: str) -> None: ...
    def party_changed(self, record: PartyRecord, disbanded: bool, members_told: bool) -> None: ...
    def run_at_owner(self, command: PartyCommand) -> None: ...


# Chat channels other instances resolve by scope from MythosMUD's own chat subjects; the
# others (party) are delivered to the ids the rule chose, like any other event.
SCOPED_CHAT = frozenset({"say", "local", "global", "emote", "pose", "whisper", "system", "admin"})


def _occupants_key(room_id: str) -> tuple[str, str]:
    """The timer of a room's held-back occupant list."""
    return ("occupants", room_id)


@attrs.frozen
class HubConfig:
    """The hub's narrow view of the settings; the defaults live in Settings alone."""

    grace_s: float
    ward_s: float
    game_tick_s: float
    max_sockets_per_player: int
    command_rate_limit: int
    command_rate_window_s: float
    max_command_chars: int
    outbox_max_bytes: int
    replay_max_events: int
    replay_max_bytes: int
    chat_window_s: float
    chat_limit_say: int
    chat_limit_local: int
    chat_limit_global: int
    chat_limit_party: int
    chat_limit_whisper: int
    chat_limit_emote: int
    chat_limit_pose: int
    request_ttl_s: float
    retired_session_s: float
    rest_s: int
    occupants_interval_s: float

    def chat_limits(self) -> dict[str, int]:
        return {channel: getattr(self, f"chat_limit_{channel}") for channel in CHANNELS}

    @classmethod
    def from_settings(cls, settings: Settings) -> HubConfig:
        names = [field.name for field in attrs.fields(cls)]
        return cls(**{name: getattr(settings, name) for name in names})


@attrs.define(eq=False)
class SocketHandle:
    """The hub's view of one socket: where its frames go."""

    socket_id: int
    player_id: str
    session_id: str | None
    outbox: Outbox


class Hub:
    def __init__(
        self,
        world: World,
        config: HubConfig,
        *,
        writer: StoreWriter,
        wall_clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.world = world
        self.metrics = Metrics() if metrics is None else metrics
        self._command_seconds = self.metrics.histogram("command_seconds")
        self._broadcaster = Broadcaster(
            self.metrics.counter("bytes_sent"), self.metrics.histogram("fanout_lag_seconds")
        )
        self._chat_lines: dict[str, CounterChild] = {}  # by channel, bound on first use
        self.config = config
        self.presences = Presences()
        self._writer = writer
        self._wall_clock = wall_clock
        self._sockets: dict[str, dict[int, SocketHandle]] = {}
        self._socket_ids = itertools.count(1)
        # Initialised from the wall clock in microseconds so numbers keep rising across restarts.
        self._sequence = int(wall_clock() * 1_000_000)
        # A Lamport clock for presence generations (Presence.generation): each presence started
        # here takes the next value, and every record heard from another instance pushes it to
        # at least that record's, so a presence that replaces a replica is always newer than
        # anything its old holder said.  From the wall clock, so it keeps rising across restarts.
        self._generation = int(wall_clock() * 1_000_000)
        self._tick_number = 0
        self._command_limits = KeyedSlidingWindow(
            config.command_rate_limit, config.command_rate_window_s
        )
        self._chat_limits = ChatLimiter(config.chat_limits(), config.chat_window_s)
        self._replay: dict[str, ReplayBuffer] = {}
        self.social = Social()
        self._quiet = False  # set by close_all: the server is shutting down
        # Rooms whose occupant list is due, and for whom (see _emit_occupants).
        self._occupants_due: dict[str, set[str]] = {}
        # When each room's last list went out (one entry per room of the world at most).
        self._occupants_sent_at: dict[str, float] = {}
        self._occupants_wakeup = trio.Event()
        # Set when an admin's shutdown countdown reaches zero; the server then drains.
        self.shutdown_requested = trio.Event()
        self._directory: dict[str, KnownPlayer] = {}
        self.peers: Peers | None = None  # set by the cluster when NATS is configured
        self._timers = Timers()
        self._lookups_tx, self._lookups_rx = trio.open_memory_channel[Lookup](MAX_PENDING_LOOKUPS)
        self._retired = RetiredSessions(config.retired_session_s)
        # A handshake reads the player's record and mutes, then awaits before it is admitted.
        # What changed meanwhile may be in neither what it read nor the hub's memory when the
        # presence starts: a mute committed with no presence to apply it to, or a move or mute
        # whose presence has ended since.  So the hub counts such changes (committed mute
        # writes, presence ends) and remembers for each player the count at their last one
        # (cleared by the sweep: nothing at or below ``_changes_forgotten`` is kept), and the
        # gate reads again if one concerns its player (:meth:`changed_since`).
        self._changes = 0
        self._changed: dict[str, int] = {}
        self._changes_forgotten = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the hub's timers (grace, ward, game tick) until cancelled."""
        if self.config.game_tick_s > 0:
            self._schedule_tick(trio.current_time())
        self._schedule_sweep(trio.current_time())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timers.serve)
            nursery.start_soon(self._serve_lookups)
            nursery.start_soon(self._serve_occupants)
            nursery.start_soon(self._broadcaster.serve)
            task_status.started()

    def socket_count(self) -> int:
        return sum(len(sockets) for sockets in self._sockets.values())

    def outbox_bytes(self) -> int:
        """Bytes queued for every socket (a scrape-time gauge: O(sockets))."""
        return sum(
            socket.outbox.queued_bytes
            for sockets in self._sockets.values()
            for socket in sockets.values()
        )

    def presence_counts(self) -> dict[tuple[str, ...], float]:
        """Presences by state, for the ``presences`` gauge (O(presences), at scrape time)."""
        counts: dict[tuple[str, ...], float] = {("active",): 0, ("linkdead",): 0, ("remote",): 0}
        for presence in self.presences:
            state = "remote" if presence.remote else "linkdead" if presence.linkdead else "active"
            counts[(state,)] += 1
        return counts

    def new_socket(self, player_id: str, session_id: str | None) -> SocketHandle:
        outbox = Outbox(self.config.outbox_max_bytes, self._broadcaster)
        return SocketHandle(next(self._socket_ids), player_id, session_id, outbox)

    def close_all(self, code: int, reason: str) -> None:
        """Ask every socket to close after what is already queued (shutdown).

        From here on nothing more is announced: every socket is closing, and telling each room
        about each departure would cost O(players²) on the event loop at the worst moment.
        """
        self._quiet = True
        for sockets in self._sockets.values():
            for socket in sockets.values():
                socket.outbox.close(code, reason)

    def end_all_presences(self) -> None:
        """Presence teardown for everyone (shutdown, after the sockets are closed)."""
        for presence in self.presences:
            if not presence.remote:
                self._sockets.pop(presence.player_id, None)
                self._end_presence(presence.player_id)

    # --- admission and departure -----------------------------------------------------------

    def retired_refusal(self, player_id: str, session_id: str | None) -> handshake.Refusal | None:
        """409 / 4409 for a session that was superseded or ended on purpose (v1.1 section 3)."""
        if self._retired.is_retired(player_id, session_id, trio.current_time()):
            return handshake.SESSION_ENDED
        return None

    def precheck(self, player_id: str, session_id: str | None) -> handshake.Refusal | None:
        """Would :meth:`admit` refuse this socket?  Asked before the upgrade, for an HTTP 4xx."""
        refusal = self.retired_refusal(player_id, session_id)
        if refusal is not None:
            return refusal
        presence = self.presences.get(player_id)
        live = self._sockets.get(player_id, {})
        if presence is not None and live and self._is_new_session(presence, session_id):
            return None  # the older sockets will be superseded, not counted
        if len(live) >= self.config.max_sockets_per_player:
            return handshake.TOO_MANY_CONNECTIONS
        return None

    def learn_players(self, records: Iterable[PlayerRecord]) -> None:
        """Remember players by name, so offline ones can be muted."""
        for record in records:
            known = KnownPlayer(record.player_id, record.name, record.is_admin)
            self._directory[record.name.casefold()] = known

    def version(self) -> int:
        """Take before reading a player's record and mutes; ask :meth:`changed_since` before
        admitting them."""
        return self._changes

    def changed_since(self, player_id: str, version: int) -> bool:
        """Could what the store said of ``player_id`` before ``version`` be stale now?  (Also
        True when the sweep has forgotten that far back: the caller then reads once more.)"""
        if version < self._changes_forgotten:
            return True
        return self._changed.get(player_id, 0) > version

    def _note_change(self, player_id: str) -> None:
        self._changes += 1
        self._changed[player_id] = self._changes

    def admit(
        self,
        record: PlayerRecord,
        socket: SocketHandle,
        resume_from: int | None = None,
        mutes: MuteRecords | None = None,
    ) -> handshake.Refusal | None:
        """Attach an accepted socket to its player's presence; send the burst or the replay."""
        refusal = self.precheck(record.player_id, socket.session_id)
        if refusal is not None:
            return refusal
        now = trio.current_time()
        presence = self.presences.get(record.player_id)
        replaced = None
        if presence is not None and presence.remote:
            # The player moves here from another instance, which retires its copy when it
            # hears of the presence this starts (upsert_replica → _hand_over there).
            self.presences.remove(record.player_id)
            replaced, presence = presence, None
            if self._is_new_session(replaced, socket.session_id):  # superseded: retired here too
                self._retired.retire(record.player_id, replaced.session_id, now)
            self._take_over_parties(record.player_id)
        # Decided before the presence is restored: a resume needs the presence to still exist.
        replay = self._replay_for(record.player_id, resume_from) if presence else None
        if presence is not None and self._is_new_session(presence, socket.session_id):
            self._supersede(record.player_id)
            self._apply(stand_up(presence))
        self.learn_players([record])
        # Registered before the presence starts: should anything below raise, the gate's
        # detach finds the socket and the presence gets its grace instead of living forever.
        self._sockets.setdefault(record.player_id, {})[socket.socket_id] = socket
        if presence is None:
            presence = self._start_presence(record, socket.session_id, now, mutes, replaced)
        elif presence.linkdead:
            self._restore_presence(presence)
        if socket.session_id is not None:
            presence.session_id = socket.session_id
        if replay is None:
            self._send_burst(socket, presence, now)
        else:
            self._send_replay(socket, replay)
        return None

    def _replay_for(self, player_id: str, resume_from: int | None) -> list[bytes] | None:
        buffer = self._replay.get(player_id)
        if resume_from is None or buffer is None or resume_from > self._sequence:
            return None
        return buffer.since(resume_from)

    def _send_replay(self, socket: SocketHandle, frames: list[bytes]) -> None:
        socket.outbox.preload(frames)
        welcome = {"message": "Connected to MythosMUD", "resumed": True, "replayed": len(frames)}
        socket.outbox.put(self._encode("welcome", welcome, None, socket.player_id)[1])

    def detach(self, socket: SocketHandle) -> None:
        """A socket is gone.  Safe to call for sockets the hub already let go of."""
        sockets = self._sockets.get(socket.player_id)
        if not sockets or sockets.pop(socket.socket_id, None) is None:
            return
        if not sockets:
            del self._sockets[socket.player_id]
            self._apply(cancel_requests(self.social, socket.player_id))
            self._enter_grace(socket.player_id)

    @staticmethod
    def _is_new_session(presence: Presence, session_id: str | None) -> bool:
        return session_id is not None and session_id != presence.session_id

    def _supersede(self, player_id: str, live_session: str | None = None) -> None:
        now = trio.current_time()
        for socket in self._sockets.pop(player_id, {}).values():
            # Never the session that lives on (on another instance, after a hand-over): its
            # client's next reconnect may land here and must be let in.
            if socket.session_id is None or socket.session_id != live_session:
                self._retire(player_id, socket.session_id, now)
            socket.outbox.close(*SUPERSEDED)

    def _start_presence(
        self,
        record: PlayerRecord,
        session_id: str | None,
        now: float,
        mutes: MuteRecords | None,
        replaced: Presence | None = None,
    ) -> Presence:
        room_id = record.room_id if record.room_id in self.world.rooms else self.world.start_room_id
        if replaced is not None and replaced.room_id in self.world.rooms:
            # The replica is where the player stands now; the store may be up to 1 s behind.
            room_id = replaced.room_id
        presence = Presence(
            player_id=record.player_id,
            user_id=record.user_id,
            name=record.name,
            level=record.level,
            is_admin=record.is_admin,
            room_id=room_id,
            session_id=session_id,
            ward_until=now + self.config.ward_s,
            generation=self._next_generation(),
        )
        self.presences.add(presence)
        if mutes is not None:
            self.social.load_mutes(
                record.player_id, mutes.personal, mutes.globally_muted, mutes.global_expires_at
            )
        self._replay[record.player_id] = ReplayBuffer(
            self.config.replay_max_events, self.config.replay_max_bytes, start=self._sequence
        )
        if self.config.ward_s > 0:
            self._timers.schedule(
                ("ward", record.player_id), presence.ward_until, self._ward_ended(record.player_id)
            )
        if replaced is None or replaced.linkdead:
            # A player who was in the world on another instance (not linkdead there) has not
            # arrived: this instance's players already see them, as for a session replacement
            # on one instance.  Coming back from a grace is an arrival, as for a local reconnect.
            self._announce_arrival(presence)
        else:
            self.sync_presences()  # the old instance must hear now (the emit did it otherwise)
        return presence

    def _next_generation(self) -> int:
        self._generation += 1
        return self._generation

    def _restore_presence(self, presence: Presence) -> None:
        presence.linkdead = False
        self.presences.changed.add(presence.player_id)
        self._timers.cancel(("grace", presence.player_id))
        self._announce_arrival(presence)

    def _announce_arrival(self, presence: Presence) -> None:
        others = self.presences.ids_in_room(presence.room_id, excluding=presence.player_id)
        self._announce_to_room("player_entered_game", presence, others)

    def _announce_to_room(
        self, event_type: str, presence: Presence, others: tuple[str, ...]
    ) -> None:
        """player_entered_game / player_left_game, then the room's fresh occupant list."""
        room_id = presence.room_id
        self._emit(Emit(event_type, presence_event_payload(presence), others, room_id=room_id))
        self._emit_occupants(room_id, others)

    def _enter_grace(self, player_id: str) -> None:
        presence = self.presences.get(player_id)
        if presence is None:
            return
        if self.config.grace_s <= 0:
            self._end_presence(player_id)
            return
        presence.linkdead = True
        self.presences.changed.add(player_id)
        deadline = trio.current_time() + self.config.grace_s
        self._timers.schedule(
            ("grace", player_id), deadline, lambda _now: self._grace_ended(player_id)
        )
        others = self.presences.ids_in_room(presence.room_id, excluding=player_id)
        self._emit_occupants(presence.room_id, others)

    def _grace_ended(self, player_id: str) -> None:
        # Only for a presence still held here: one that moved to another instance is no longer
        # this instance's to end (its hand-over cancels this timer; this guards the rule).
        if self._held_here(player_id):
            self._end_presence(player_id)

    def _end_presence(self, player_id: str, handed_over: bool = False) -> None:
        if self.presences.get(player_id) is None:
            return
        # Social teardown first, while the player's name and party are still known.
        self._apply(end_social_presence(self.social, self.presences, player_id, handed_over))
        presence = self.presences.remove(player_id)
        if presence is None:
            return
        self._note_change(player_id)  # where they stood (and their mutes) now live in the store
        for kind in ("grace", "ward", "rest"):
            self._timers.cancel((kind, player_id))
        self._command_limits.forget(player_id)
        self._chat_limits.forget(player_id)
        self._replay.pop(player_id, None)
        if not self._quiet:  # shutting down: nobody is left to tell, and telling is O(room)
            self._announce_to_room(
                "player_left_game", presence, self.presences.ids_in_room(presence.room_id)
            )

    def _ward_ended(self, player_id: str) -> Callable[[float], None]:
        def refresh(_now: float) -> None:
            presence = self.presences.get(player_id)
            if presence is not None:
                room_id = presence.room_id
                self._emit_occupants(room_id, self.presences.ids_in_room(room_id))

        return refresh

    # --- what clients send -----------------------------------------------------------------

    def handle_command(self, socket: SocketHandle, command: str, args: tuple[str, ...]) -> None:
        started = time.perf_counter()
        self._handle_command(socket, command, args)
        self._command_seconds.observe(time.perf_counter() - started)

    def _handle_command(self, socket: SocketHandle, command: str, args: tuple[str, ...]) -> None:
        ctx = self._context(socket)
        if ctx is None:
            return
        player_id = ctx.actor.player_id
        if not self._command_limits.allow(player_id, ctx.now):
            wait_s = self._command_limits.retry_after(player_id, ctx.now)
            self._emit(reply(player_id, f"Too many commands. Please wait {wait_s:.1f} seconds."))
            return
        self._run_command(ctx, socket, command, args)

    def flush_ready(self) -> None:
        """Frames queued by the caller leave now, but for sockets written to in the last
        broadcaster interval (broadcast.py)."""
        self._broadcaster.flush()

    def logout(self, player_id: str) -> bool:
        """Log the player out as the ``logout`` command does; False when not present here."""
        presence = self.presences.get(player_id)
        if presence is None:
            return False
        if presence.remote:
            # Behind a proxy the HTTP call may land anywhere: the holder of the sockets logs
            # the player out (answering "logged out" and doing nothing left them in the world).
            if self.peers is None:
                return False
            self.peers.forward(Delivery(LOGOUT, {}, (player_id,)))
            return True
        self._apply(logout_effects(player_id))
        return True

    def _rule(self, ctx: CommandContext, run: Callable[[], list[Effect]]) -> list[Effect]:
        """Run a rule all or nothing: if it raises, the live state is as it was before (see
        core/rollback.py), the player is told, the fault is logged, and nobody else notices."""
        try:
            with all_or_nothing(self.social):
                return run()
        except Exception:
            self.metrics.inc("rule_errors")
            log.exception("a rule failed for player %s; its changes were undone", ctx.actor.name)
            return [reply(ctx.actor.player_id, RULE_FAILED)]

    def _run_command(
        self, ctx: CommandContext, socket: SocketHandle, command: str, args: tuple[str, ...]
    ) -> None:
        max_chars = self.config.max_command_chars
        effects = self._rule(ctx, partial(dispatch, ctx, command, args, max_chars))
        lookup = next((e for e in effects if isinstance(e, FindPlayer)), None)
        if lookup is None:
            self._apply(effects)
            if any(isinstance(e, Emit) and e.event_type == "follow_state" for e in effects):
                self._forget_remote_followers()  # `accept` answered a follow, as the frame does
            return
        try:
            self._lookups_tx.send_nowait(Lookup(socket, command, args, lookup.name))
        except trio.WouldBlock:
            log.warning("name look-up queue full; answering without the store")
            self._run_command(attrs.evolve(ctx, store_consulted=True), socket, command, args)

    async def _serve_lookups(self) -> None:
        """Ask the store about names this instance has not met, then run the command again."""
        async for lookup in self._lookups_rx:
            store = self._writer.store
            try:
                # A plain read, not read_after_writes: the writer never writes players (the CLI
                # and other instances create them), and waiting behind pending writes would hold
                # the command for as long as a store outage lasts.
                record = await store.call(store.backend.find_player_by_name, lookup.name)
            except StoreError as exc:
                # The store could not say, so "not found" would be false: ask for a retry.
                log.warning("name look-up failed: %s", exc)
                self._emit(reply(lookup.socket.player_id, NOT_SAVED))
                continue
            if record is not None:
                self.learn_players([record])
            ctx = self._context(lookup.socket, store_consulted=True)
            if ctx is not None:
                self._run_command(ctx, lookup.socket, lookup.command, lookup.args)

    def _context(
        self, socket: SocketHandle, store_consulted: bool = False
    ) -> CommandContext | None:
        presence = self._presence_of(socket)
        if presence is None:
            return None
        return self._context_for(presence, socket.socket_id, store_consulted)

    def _context_for(
        self, presence: Presence, socket_id: int = 0, store_consulted: bool = False
    ) -> CommandContext:
        return CommandContext(
            self.world,
            self.presences,
            presence,
            socket_id,
            trio.current_time(),
            self._wall_clock(),
            self._chat_limits,
            new_id=lambda: str(uuid.uuid4()),
            social=self.social,
            directory=self._directory,
            request_ttl_s=self.config.request_ttl_s,
            store_consulted=store_consulted,
            rest_s=self.config.rest_s,
        )

    def handle_response(
        self, socket: SocketHandle, message: FollowResponse | PartyInviteResponse
    ) -> None:
        """A follow_response or party_invite_response frame (section 11)."""
        ctx = self._context(socket)
        if ctx is None:
            return
        if isinstance(message, FollowResponse):
            rule = partial(respond_to_follow, ctx, message.request_id, message.accept)
        else:
            rule = partial(respond_to_party_invite, ctx, message.invite_id, message.accept)
        self._apply(self._rule(ctx, rule))
        self._forget_remote_followers()

    def send_to_socket(
        self, socket: SocketHandle, event_type: str, data: Mapping[str, object]
    ) -> None:
        """An event for one socket only (pong, token notices)."""
        socket.outbox.put(self._encode(event_type, data, None, socket.player_id)[1])

    def _presence_of(self, socket: SocketHandle) -> Presence | None:
        if socket.socket_id not in self._sockets.get(socket.player_id, {}):
            return None  # superseded or already let go: its frames no longer count
        return self.presences.get(socket.player_id)

    # --- effects ---------------------------------------------------------------------------

    def _apply(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Emit):
                self._emit(effect)
            elif isinstance(effect, Disconnect):
                self._disconnect(effect)
            elif isinstance(effect, SaveRoom):
                self._writer.save_room(effect.player_id, effect.room_id)
            elif isinstance(effect, Persist):
                self._persist(effect)
            elif isinstance(effect, ShutdownCountdown):
                self._countdown(effect)
            elif isinstance(effect, RestCountdown):
                self._rest(effect)
            elif isinstance(effect, AdminAction):
                log_admin_action(effect.admin, effect.action, effect.target, effect.detail or "")
            elif isinstance(effect, PartyAtOwner):
                self._ask_owner(effect)

    def _persist(self, effect: Persist) -> None:
        """Section 10: the change takes effect, and is confirmed, only once it is committed."""
        if not self._writer.healthy:
            self._emit(reply(effect.requested_by, NOT_SAVED))
            return

        def settled(committed: bool) -> None:
            if not committed:
                self._emit(reply(effect.requested_by, NOT_SAVED))
                return
            self._note_change(self.social.mutes_owner(effect.write))
            self.social.apply_committed(effect.write, self.presences)
            self._tell_holder(effect.write)
            self._apply(effect.then)

        self._writer.submit(effect.write, settled)

    def _tell_holder(self, write: Write) -> None:
        """A global mute of a player another instance holds takes effect there."""
        if self.peers is None or not isinstance(write, SetGlobalMute | DeleteGlobalMute):
            return
        if self._held_elsewhere(write.target_id):
            expires_at = write.expires_at if isinstance(write, SetGlobalMute) else None
            data = {"muted": isinstance(write, SetGlobalMute), "expires_at": expires_at}
            self.peers.forward(Delivery(GLOBAL_MUTE, data, (write.target_id,)))

    def _global_mute_from_peer(self, delivery: Delivery) -> None:
        muted, expires_at = delivery.data.get("muted"), delivery.data.get("expires_at")
        if type(muted) is not bool or not (expires_at is None or type(expires_at) in (int, float)):
            raise ClusterMessageError("a global mute needs muted (bool) and expires_at")
        for player_id in delivery.to:
            write: Write = (
                SetGlobalMute(player_id, "", expires_at) if muted else DeleteGlobalMute(player_id)
            )
            self.social.apply_committed(write, self.presences)

    def _kick_from_peer(self, delivery: Delivery) -> None:
        code, reason = delivery.data.get("code"), delivery.data.get("reason")
        if type(code) is not int or not 4000 <= code <= 4999 or not isinstance(reason, str):
            raise ClusterMessageError("a kick needs code (4000-4999) and reason (text)")
        for player_id in delivery.to:
            if self._held_here(player_id):  # never passed on again: no ping-pong
                self._disconnect(Disconnect(player_id, code, reason, retire_sessions=True))

    def _disconnect(self, effect: Disconnect) -> None:
        player_id = effect.player_id
        presence = self.presences.get(player_id)
        log_event(
            log,
            "logout",
            player=None if presence is None else presence.name,
            player_id=player_id,
            code=effect.code,
            reason=effect.reason,
        )
        if presence is not None and presence.remote:
            # An admin's kick or ban of a player another instance holds: that instance closes
            # the sockets and ends the presence; this replica goes when it says so.
            if self.peers is not None:
                data = {"code": effect.code, "reason": effect.reason}
                self.peers.forward(Delivery(KICK, data, (player_id,)))
            return
        sockets = self._sockets.pop(player_id, {}).values()
        if effect.retire_sessions:
            current = presence.session_id if presence is not None else None
            now = trio.current_time()
            for session_id in {current, *(socket.session_id for socket in sockets)}:
                self._retire(player_id, session_id, now)
        for socket in sockets:
            socket.outbox.close(effect.code, effect.reason)
        self._end_presence(player_id)

    def _emit(self, event: Emit) -> None:
        if self.peers is not None and not self._quiet:
            # Replicas elsewhere must be current before anything about them arrives there.
            # Not while quiet: a hand-over must not announce the end of its copy (the player
            # lives on elsewhere), and at shutdown open_app publishes the ends in one go.
            self.sync_presences()
        if not event.to or self._quiet:
            return
        if self.peers is not None and event.event_type not in PRESENCE_EVENTS:
            self._forward(self.peers, event)
        self._deliver(event, event.to)

    def _deliver(self, event: Emit, to: Iterable[str]) -> None:
        """Encode once; every socket of every recipient this instance holds gets the bytes."""
        sequence, frame = self._encode(event.event_type, event.data, event.room_id, event.player_id)
        if event.event_type == "chat_message":
            self._count_chat_line(str(event.data.get("channel")))
        replay = self._replay if event.event_type not in EPHEMERAL_EVENTS else _NO_REPLAY
        sockets_of = self._sockets
        now = trio.current_time()  # once per event: it stamps every recipient's batch
        # The hot loop of fan-out: per recipient two dict look-ups, a replay append, a put.
        for player_id in to:
            if (buffer := replay.get(player_id)) is not None:
                buffer.append(sequence, frame)
            if sockets := sockets_of.get(player_id):
                for socket in sockets.values():
                    socket.outbox.put(frame, now)

    def _count_chat_line(self, channel: str) -> None:
        counter = self._chat_lines.get(channel)
        if counter is None:
            counter = self._chat_lines[channel] = self.metrics.counter(
                "chat_messages", channel=channel
            )
        counter.inc()

    # --- other instances (multi-instance play, docs/NATS.md) --------------------------------

    def _forward(self, peers: Peers, event: Emit) -> None:
        """Local first: the caller delivers here; other instances hear of it now."""
        channel = event.data.get("channel") if event.event_type == "chat_message" else None
        sender = self.presences.get(event.player_id or "")
        # A globally muted speaker's line goes only to the admins the rule chose: other instances
        # would resolve its scope to everyone, so it travels to those ids (below) instead.
        if (
            channel in SCOPED_CHAT
            and sender is not None
            and not sender.remote
            and not self.social.globally_muted(sender.player_id, self._wall_clock())
        ):
            peers.forward_chat(event, sender)
            return
        remote = tuple(pid for pid in event.to if self._held_elsewhere(pid))
        if remote:
            peers.forward(self._delivery(event, remote))

    def _delivery(self, event: Emit, to: tuple[str, ...]) -> Delivery:
        mutable_sender = event.player_id if event.event_type in MUTABLE_EVENTS else None
        return Delivery(
            event.event_type, event.data, to, event.room_id, event.player_id, mutable_sender
        )

    def _retire(self, player_id: str, session_id: str | None, now: float) -> None:
        """Section 3: refused here for RETIRED_SESSION_S, and on every other instance too."""
        self._retired.retire(player_id, session_id, now)
        if self.peers is not None and session_id is not None:
            self.peers.session_retired(player_id, session_id)

    def retire_from_peer(self, player_id: str, session_id: str) -> None:
        self._retired.retire(player_id, session_id, trio.current_time())

    def _held_elsewhere(self, player_id: str) -> bool:
        presence = self.presences.get(player_id)
        return presence is not None and presence.remote

    def sync_presences(self) -> None:
        """Tell other instances about parties and presences this instance changed since the
        last call (parties first: a disbanded party is gone before its leader's presence)."""
        self._sync_parties()
        if self.peers is None or not self.presences.changed:
            return
        changed, self.presences.changed = self.presences.changed, set()
        now = trio.current_time()
        records, gone = [], []
        for player_id in changed:
            presence = self.presences.get(player_id)
            if presence is None:
                gone.append(player_id)
            elif not presence.remote:
                records.append(PresenceRecord.of(presence, now))
        self.peers.presences_changed(records, gone)

    def local_parties(self) -> list[PartyRecord]:
        """Every party this instance owns, for a heartbeat."""
        return [PartyRecord.of(p) for p in self.social.parties.values() if not p.remote]

    def local_records(self) -> list[PresenceRecord]:
        """Every presence this instance holds, for a heartbeat (liveness and snapshot)."""
        now = trio.current_time()
        return [PresenceRecord.of(p, now) for p in self.presences if not p.remote]

    def deliver_from_peer(self, delivery: Delivery) -> None:
        """An event another instance chose recipients for: ours get it, minus their mutes."""
        if delivery.event_type == GLOBAL_MUTE:
            self._global_mute_from_peer(delivery)
            return
        if delivery.event_type == LOGOUT:
            for player_id in delivery.to:
                if self._held_here(player_id):  # never passed on again: no ping-pong
                    self.logout(player_id)
            return
        if delivery.event_type == KICK:
            self._kick_from_peer(delivery)
            return
        # Held here: with sockets, or in their disconnect grace (the replay buffer takes it).
        to = [pid for pid in delivery.to if self._held_here(pid)]
        to = self._unmuted(to, delivery.sender_id)
        event = Emit(delivery.event_type, delivery.data, (), delivery.room_id, delivery.player_id)
        if delivery.event_type == "follow_request":
            self._mirror_follow_request(delivery.data, to)
        elif delivery.event_type == "party_invite":
            self._mirror_party_invite(delivery.data, to)
        elif delivery.event_type == "follow_state":
            self._follow_state_from_peer(delivery.data, to)
        if to:
            self._deliver(event, to)

    # --- parties across instances -----------------------------------------------------------
    # A party is owned by the instance holding its leader's presence: it alone runs changes to
    # the party and publishes the whole record after each; every other instance keeps a
    # read-only replica (listing and party chat run there).  A change asked elsewhere travels
    # to the owner (PartyAtOwner), which runs the same rule with the actor's replica.

    def _sync_parties(self) -> None:
        changed, self.social.changed_parties = self.social.changed_parties, {}
        if self.peers is None:
            return
        for party_id, party in changed.items():
            if party.remote:
                continue  # handed over since it changed: the new owner publishes
            party.version += 1
            disbanded = self.social.parties.get(party_id) is not party
            told = not self._quiet  # at shutdown nothing is delivered: the others tell theirs
            self.peers.party_changed(PartyRecord.of(party), disbanded, told)

    def _take_over_parties(self, leader_id: str) -> None:
        """The leader's presence moved here: the parties they lead are this instance's now."""
        for party in self.social.led_by(leader_id):
            if party.remote:
                party.owner = None
                self.social.party_changed(party)  # published with a higher version

    def _ask_owner(self, effect: PartyAtOwner) -> None:
        party = self.social.party_for(effect.actor_id)
        leader_id = party.leader_id if party is not None else ""
        if self.peers is None or self._timers.pending(("peer-grace", leader_id)):
            # The leader's instance is lost (their grace runs here): nobody would answer.
            text = "The party leader cannot be reached right now. Please try again shortly."
            self._emit(reply(effect.actor_id, text))
            return
        command = PartyCommand(
            effect.owner, effect.actor_id, effect.args, effect.invite_id, effect.accept
        )
        self.peers.run_at_owner(command)

    def party_command_from_peer(self, command: PartyCommand) -> None:
        """A party change asked on another instance: the same rule, run here (the owner)."""
        actor = self.presences.get(command.actor_id)
        if actor is None:
            return  # they left meanwhile; their party teardown runs with the presence's end
        ctx = self._context_for(actor)
        sub = command.args[0].lower() if command.args else None
        if command.invite_id is not None and command.accept is not None:
            rule = partial(respond_to_party_invite, ctx, command.invite_id, command.accept)
            effects = self._rule(ctx, rule)
        elif sub == "invite" and self.social.party_for(actor.player_id) is None:
            # Sent as a member, no longer one (kicked meanwhile): run here, it would make a
            # party led by a player this instance does not hold.
            effects = [reply(actor.player_id, PARTY_MOVED)]
        elif sub in ("invite", "leave", "kick"):
            effects = self._rule(ctx, partial(party_command, ctx, command.args))
        else:
            raise ClusterMessageError("a party command is invite, leave, kick or an answer")
        if any(isinstance(effect, PartyAtOwner) for effect in effects):
            # Ownership moved on while the command travelled: never passed on a second time.
            effects = [reply(actor.player_id, PARTY_MOVED)]
        self._apply(effects)

    def party_from_peer(self, change: PartyChange) -> None:
        """A party another instance owns changed: the replica here follows it."""
        record = change.party
        held = self.social.parties.get(record.party_id)
        if held is not None and record.version <= held.version:
            return  # stale: sent before a newer change (or take-over) this instance has seen
        if held is not None and change.disbanded and not change.members_told:
            self._disband_here(held)  # the owner was shutting down: it told only its own
            return
        if held is not None:
            self.social.remove_party(held)  # quietly: the owner tells every member
            self.social.changed_parties.pop(record.party_id, None)  # (a take-over, if ours)
        if not change.disbanded:
            self.social.add_party(record.replica(change.instance_id))

    def parties_snapshot(self, instance_id: str, records: Iterable[PartyRecord]) -> None:
        """A heartbeat lists every party its sender owns: repair what this instance missed."""
        listed = set()
        for record in records:
            listed.add(record.party_id)
            self.party_from_peer(PartyChange(instance_id, record))
        for party in list(self.social.parties.values()):
            if party.owner != instance_id or party.party_id in listed:
                continue
            leader = self.presences.get(party.leader_id)
            if leader is not None and leader.instance_id not in (instance_id, None):
                continue  # the leader moved on: their new instance publishes the party
            self._disband_here(party)  # its end was missed (an outage): tell ours now

    def _party_member_gone(self, player_id: str) -> None:
        """A replica's presence ended (its instance said so, or its grace ran out here)."""
        party = self.social.party_for(player_id)
        if party is None:
            return
        if not party.remote:
            self._apply(leave_party(self.social, self.presences, player_id))
        elif party.leader_id == player_id:
            # The leader's presence ended everywhere, and with the owner gone nobody else will
            # say so: each instance tells the members it holds.
            self._disband_here(party)

    def _disband_here(self, party: Party) -> None:
        """End a replica; only the members this instance holds hear of it."""
        for effect in disband(self.social, self.presences, party):
            if isinstance(effect, Emit):
                to = tuple(pid for pid in effect.to if self._held_here(pid))
                if to:
                    self._deliver(effect, to)
        self.social.changed_parties.pop(party.party_id, None)

    def _mirror_party_invite(self, data: Mapping[str, object], to: list[str]) -> None:
        """The invitee is here: keep the invite, so their answer finds the party's owner."""
        invite_id, inviter = data.get("invite_id"), data.get("inviter_id")
        if not isinstance(invite_id, str) or not isinstance(inviter, str):
            return
        party_id = self.social.party_of.get(inviter)
        expires_at = trio.current_time() + self.config.request_ttl_s
        for invitee in to:
            self.social.requests[invite_id] = Request(
                invite_id, "party", inviter, invitee, expires_at, party_id
            )

    # --- following across instances -------------------------------------------------------
    # The follower's instance owns the relation (it moves the follower); the leader's instance
    # only mirrors the request so the leader can answer it, and forgets the relation once the
    # answer has gone out.

    def _mirror_follow_request(self, data: Mapping[str, object], to: list[str]) -> None:
        request_id, requester = data.get("request_id"), data.get("requestor_id")
        if not isinstance(request_id, str) or not isinstance(requester, str):
            return
        expires_at = trio.current_time() + self.config.request_ttl_s
        for leader_id in to:
            self.social.requests[request_id] = Request(
                request_id, "follow", requester, leader_id, expires_at
            )

    def _follow_state_from_peer(self, data: Mapping[str, object], to: list[str]) -> None:
        """The leader's instance answered: the follower's instance records the outcome."""
        following = data.get("following")
        leader_name = following.get("target_name") if isinstance(following, dict) else None
        leader = self.presences.find_by_name(leader_name) if isinstance(leader_name, str) else None
        for follower_id in to:
            for request in [r for r in self.social.requests.values() if r.from_id == follower_id]:
                if request.kind == "follow":
                    del self.social.requests[request.request_id]
            if leader is None:
                self.social.following.pop(follower_id, None)
            else:
                self.social.following[follower_id] = leader.player_id

    def _forget_remote_followers(self) -> None:
        for follower_id in list(self.social.following):
            if self._held_elsewhere(follower_id):
                del self.social.following[follower_id]

    def _follow_replica(self, leader: Presence, old_room: str) -> None:
        """A leader on another instance walked: their followers here walk after them."""
        room = self.world.rooms.get(old_room)
        exits = room.exits.items() if room is not None else ()
        direction = next((d for d, dest in exits if dest == leader.room_id), None)
        if direction is None:
            return  # not a walk (they came back elsewhere): nobody follows a jump
        for follower_id in self.social.followers_of(leader.player_id):
            follower = self.presences.get(follower_id)
            if follower is None or follower.remote or follower.linkdead:
                continue
            if follower.room_id == old_room:
                text = f"You follow {leader.name} {direction}."
                ctx = self._context_for(follower)
                leader_only = frozenset({leader.player_id})
                self._apply(self._rule(ctx, partial(move, ctx, direction, text, leader_only)))

    def deliver_chat_from_peer(
        self,
        data: Mapping[str, object],
        room_id: str | None,
        subzone: str | None,
        target_id: str | None,
        party_id: str | None = None,
    ) -> None:
        """A chat line from another instance or an outside publisher (an NPC service):
        resolved by its scope against the players this instance holds."""
        channel = str(data.get("channel"))
        sender_id = data.get("sender_id")
        sender = sender_id if isinstance(sender_id, str) else None
        if channel == "party":
            scope = self._party_members_here(party_id, sender)
        else:
            scope = audience_here(
                self.presences, self.world, channel, (room_id, subzone, target_id), sender
            )
        to = self._unmuted(scope, sender)
        if channel == "whisper" and sender is not None:
            for player_id in to:
                self.presences.get(player_id).last_whisperer = sender  # type: ignore[union-attr]
        if to:
            self._deliver(Emit("chat_message", data, (), room_id, sender), to)

    def deliver_room_event(self, event_type: str, data: Mapping[str, object], room_id: str) -> None:
        """A room event an outside service published: everyone here in that room gets it."""
        to = self._local_ids_in(room_id)
        if to:
            self._deliver(Emit(event_type, data, (), room_id=room_id), to)

    def _party_members_here(self, party_id: str | None, sender_id: str | None) -> list[str]:
        """A party line from outside: the members this instance holds (every instance keeps
        every party, owned or replica)."""
        party = self.social.parties.get(party_id or "")
        members = party.members if party is not None else []
        return [m for m in members if m != sender_id and self._held_here(m)]

    def _unmuted(self, to: Iterable[str], sender_id: str | None) -> list[str]:
        if sender_id is None:
            return list(to)
        wall_now = self._wall_clock()
        return [pid for pid in to if not self.social.has_muted(pid, sender_id, wall_now)]

    def _held_here(self, player_id: str) -> bool:
        presence = self.presences.get(player_id)
        return presence is not None and not presence.remote

    def upsert_replica(self, record: PresenceRecord, instance_id: str) -> None:
        """Another instance holds this player now, as ``record`` says; this instance's players
        hear what changed, as they would for a player of their own."""
        current = self.presences.get(record.player_id)
        self._generation = max(self._generation, record.generation)
        if current is not None and record.generation < current.generation:
            # Stale: sent before its sender heard of the newer presence here or elsewhere (NATS
            # orders per publisher only), e.g. the old instance's heartbeat crossing the player's
            # reconnect here.  Taking it would close the new session, or flip a replica back.
            return
        handed_over_from = None
        if current is not None and not current.remote:
            handed_over_from = current.room_id
            # The player connected there: this copy retires.
            self._hand_over(record.player_id, record.session_id, instance_id)
            current = None
        self._timers.cancel(("peer-grace", record.player_id))
        now = trio.current_time()
        if current is None:
            replica = record.replica(instance_id, now)
            self.presences.add(replica)
            if handed_over_from is None:
                self._replica_entered_game(replica, now)
            else:
                # Not a newcomer: the player was here all along, only their sockets moved.
                self._replica_handed_over(replica, handed_over_from, now)
        else:
            self._refresh_replica(current, record, instance_id, now)
        self.presences.changed.discard(record.player_id)  # not ours to announce elsewhere

    def _replica_entered_game(self, replica: Presence, now: float) -> None:
        self._announce_arrival(replica)
        if replica.warded(now):
            key = ("ward", replica.player_id)
            self._timers.schedule(key, replica.ward_until, self._ward_ended(replica.player_id))

    def _replica_handed_over(self, replica: Presence, old_room: str, now: float) -> None:
        if replica.room_id != old_room:
            self._replica_moved(replica, old_room)
        else:
            self._emit_occupants(replica.room_id, self._local_ids_in(replica.room_id))
        if replica.warded(now):
            key = ("ward", replica.player_id)
            self._timers.schedule(key, replica.ward_until, self._ward_ended(replica.player_id))

    def _refresh_replica(
        self, replica: Presence, record: PresenceRecord, instance_id: str, now: float
    ) -> None:
        old_room, was_linkdead = replica.room_id, replica.linkdead
        if record.session_id is not None and self._is_new_session(replica, record.session_id):
            # A newer session superseded this one somewhere: retired on every instance (section
            # 3), or the old tab reconnecting here would take the player back from the new one.
            self._retired.retire(record.player_id, replica.session_id, now)
        replica.instance_id = instance_id
        replica.generation = record.generation  # else a stale record of the old holder passes
        replica.linkdead = record.linkdead
        replica.session_id = record.session_id
        replica.ward_until = now + record.ward_remaining_s
        if old_room != record.room_id:
            self.presences.move(record.player_id, record.room_id)
            self._replica_moved(replica, old_room)
        elif was_linkdead and not record.linkdead:
            self._announce_arrival(replica)  # back from the grace, as for a local reconnect
        elif was_linkdead != record.linkdead:
            self._emit_occupants(replica.room_id, self._local_ids_in(replica.room_id))

    def _replica_moved(self, replica: Presence, old_room: str) -> None:
        who = {"player_id": replica.player_id, "player_name": replica.name}
        left_behind, met = self._local_ids_in(old_room), self._local_ids_in(replica.room_id)
        leaves = {**who, "message": f"{replica.name} leaves the room."}
        self._emit(Emit("player_left", leaves, left_behind, room_id=old_room))
        self._emit_occupants(old_room, left_behind)
        enters = {**who, "message": f"{replica.name} enters the room."}
        self._emit(Emit("player_entered", enters, met, room_id=replica.room_id))
        self._emit_occupants(replica.room_id, met)
        self._follow_replica(replica, old_room)

    def drop_replica(self, player_id: str, instance_id: str) -> None:
        """That instance no longer holds the player: they left the world."""
        presence = self.presences.get(player_id)
        if presence is None or presence.instance_id != instance_id:
            return
        self._apply(stop_following(self.social, self.presences, player_id))
        self._party_member_gone(player_id)
        self.presences.remove(player_id)
        self.presences.changed.discard(player_id)
        for kind in ("peer-grace", "ward"):
            self._timers.cancel((kind, player_id))
        self._announce_to_room("player_left_game", presence, self._local_ids_in(presence.room_id))

    def instance_lost(self, instance_id: str) -> None:
        """An instance stopped answering: its players are linkdead here, and leave after the
        grace unless they reconnect somewhere (section 16)."""
        # Every replica of that instance gets the grace, also those already linkdead there: the
        # owner's own grace will never end them now (its "down" cannot come), so without a
        # timer here they would stay "(linkdead)" forever.
        held = [p for p in self.presences if p.instance_id == instance_id]
        lost = [p for p in held if not p.linkdead]
        deadline = trio.current_time() + self.config.grace_s
        for presence in held:
            presence.linkdead = True
            self._timers.schedule(
                ("peer-grace", presence.player_id),
                deadline,
                self._replica_grace_ended(presence.player_id, instance_id),
            )
        for room_id in {p.room_id for p in lost}:
            self._emit_occupants(room_id, self._local_ids_in(room_id))

    def _replica_grace_ended(self, player_id: str, instance_id: str) -> Callable[[float], None]:
        return lambda _now: self.drop_replica(player_id, instance_id)

    def _local_ids_in(self, room_id: str) -> tuple[str, ...]:
        return tuple(p.player_id for p in self.presences.in_room(room_id) if not p.remote)

    def _hand_over(self, player_id: str, live_session: str | None, instance_id: str) -> None:
        """The player's new session lives on another instance: close ours 4000 and forget the
        presence without telling the room (the player has not left the world, nor their party;
        a party they lead now belongs to their new instance, which took it over)."""
        self._supersede(player_id, live_session)
        self._hand_over_following(player_id)
        for party in self.social.led_by(player_id):
            if not party.remote:
                party.owner = instance_id
                self.social.changed_parties.pop(party.party_id, None)
        quiet, self._quiet = self._quiet, True
        try:
            self._end_presence(player_id, handed_over=True)
        finally:
            self._quiet = quiet

    def _hand_over_following(self, follower_id: str) -> None:
        """Whom the player follows is kept by the instance holding them: it moves with them.
        The same ``follow_state`` a leader's instance sends records it there (and tells the
        new socket, whose burst could not know)."""
        leader = self.presences.get(self.social.following.get(follower_id, ""))
        if leader is not None and self.peers is not None:
            data = follow_state(leader.name)
            self.peers.forward(Delivery("follow_state", data, (follower_id,)))

    def _emit_occupants(self, room_id: str, to: tuple[str, ...]) -> None:
        """A room's occupant list is due for ``to``: at most one per room per OCCUPANTS_INTERVAL_S.

        Arrivals, departures, linkdead and ward changes each make a room's list stale; a
        storm of them (a restart putting everyone back, a proxy dropping its connections)
        would otherwise send the whole list to the whole room per change: O(room²) frames and
        bytes.  Marked here, built and sent later from the presences as they are then, so
        everyone converges on the same final list: once the current round of tasks has run if
        the room had no list in the last interval, else when the interval is over.  A storm
        spread over many rounds then costs one list per member per interval, not per arrival.
        """
        if self._quiet or not to:
            return  # shutting down: the list would be built only to be dropped
        due = self._occupants_due.get(room_id)
        if due is not None:
            due.update(to)
            return
        self._occupants_due[room_id] = set(to)
        held_until = self._occupants_sent_at.get(room_id, -math.inf)
        held_until += self.config.occupants_interval_s
        if held_until <= trio.current_time():
            self._occupants_wakeup.set()  # flush_occupants, at the end of this round
        else:
            self._timers.schedule(
                _occupants_key(room_id),
                held_until,
                partial(self._send_occupants, room_id),
            )

    async def _serve_occupants(self) -> None:
        while True:
            await self._occupants_wakeup.wait()
            self._occupants_wakeup = trio.Event()
            self.flush_occupants()

    def flush_occupants(self) -> None:
        """Send every due occupant list that is not held back by its room's interval."""
        now = trio.current_time()
        ready = [r for r in self._occupants_due if not self._timers.pending(_occupants_key(r))]
        for room_id in ready:
            self._send_occupants(room_id, now)

    def _send_occupants(self, room_id: str, now: float) -> None:
        """The room's list as it is now, to those of its recipients still in the room."""
        wanted = self._occupants_due.pop(room_id, None)
        if wanted is None or self._quiet:
            return
        here = tuple(pid for pid in self.presences.ids_in_room(room_id) if pid in wanted)
        if here:
            self._occupants_sent_at[room_id] = now
            data = occupants_payload(room_id, self.presences, now)
            self._emit(Emit("room_occupants", data, here, room_id=room_id))

    def _encode(
        self,
        event_type: str,
        data: Mapping[str, object],
        room_id: str | None,
        player_id: str | None,
    ) -> tuple[int, bytes]:
        self._sequence += 1
        text = encode_event(
            event_type,
            data,
            sequence_number=self._sequence,
            timestamp=self._wall_clock(),
            room_id=room_id,
            player_id=player_id,
        )
        return self._sequence, text_frame(text)

    # --- connect burst and tick -----------------------------------------------------------

    def _send_burst(self, socket: SocketHandle, presence: Presence, now: float) -> None:
        room = self.world.rooms[presence.room_id]
        pid, rid = presence.player_id, room.id
        leader = self.presences.get(self.social.following.get(presence.player_id, ""))
        following = follow_state(leader.name if leader else None)["following"]
        state = game_state_payload(presence, room, self.presences, now, following)
        room_data = room_payload(room, self.presences, now)
        update = {"room": room_data, "entities": [], "occupants": room_data["occupants"]}
        welcome = {"message": "Connected to MythosMUD", "resumed": False}
        burst = [
            self._encode("game_state", state, rid, pid),
            self._encode("room_update", update, rid, None),
            self._encode("room_occupants", occupants_payload(rid, self.presences, now), rid, None),
            self._encode("welcome", welcome, None, pid),
        ]
        for _, frame in burst:
            socket.outbox.put(frame)

    # --- admin shutdown countdown (section 14) ---------------------------------------------

    def _countdown(self, effect: ShutdownCountdown) -> None:
        everyone = tuple(self.presences_ids())
        if effect.seconds is None:
            if not self._timers.pending("shutdown"):
                self._emit(reply(effect.requested_by, "No shutdown is scheduled."))
                return
            self._timers.cancel("shutdown")
            self._emit(reply(effect.requested_by, "Shutdown cancelled."))
            data = {"message": "The scheduled shutdown has been cancelled", "channel": "system"}
            self._emit(Emit("shutdown_cancelled", data, everyone))
            return
        self._emit(reply(effect.requested_by, f"Shutdown scheduled in {effect.seconds} seconds."))
        self._shutdown_notice(effect.seconds, trio.current_time())

    def _shutdown_notice(self, remaining: int, now: float) -> None:
        if remaining <= 0:
            self.shutdown_requested.set()
            return
        data = {
            "message": f"The server will be shutting down in {remaining} seconds",
            "seconds_remaining": remaining,
            "channel": "system",
        }
        self._emit(Emit("shutdown_notification", data, tuple(self.presences_ids())))
        # Every 10 s while more than 10 s remain, then every second.
        following = max(remaining - 10, 10) if remaining > 10 else remaining - 1
        self._timers.schedule(
            "shutdown",
            now + (remaining - following),
            lambda at: self._shutdown_notice(following, at),
        )

    # --- rest countdown (v1.1 section 9) --------------------------------------------------

    def _rest(self, effect: RestCountdown) -> None:
        if effect.seconds is None:
            self._timers.cancel(("rest", effect.player_id))
        elif effect.seconds <= 0:
            self._apply(rest_tick(effect.player_id, 0))
        else:
            self._rest_in_a_second(effect.player_id, effect.seconds, trio.current_time())

    def _rest_in_a_second(self, player_id: str, remaining: int, now: float) -> None:
        """A second from now, the next notice; at zero the goodbye (the reply said the start)."""

        def tick(at: float) -> None:
            if not self._held_here(player_id):
                return  # the player moved to another instance: their rest ended with the move
            self._apply(rest_tick(player_id, remaining - 1))
            if remaining > 1:
                self._rest_in_a_second(player_id, remaining - 1, at)

        self._timers.schedule(("rest", player_id), now + 1, tick)

    def presences_ids(self) -> list[str]:
        """The players this instance holds (replicas of other instances' players excluded)."""
        return [presence.player_id for presence in self.presences if not presence.remote]

    def _schedule_sweep(self, now: float) -> None:
        """Expired follow requests and party invites are dropped, so memory stays bounded."""

        def sweep(now: float) -> None:
            self.social.expire_requests(now)
            self._retired.expire(now)
            self._changed.clear()
            self._changes_forgotten = self._changes
            if self.peers is None:
                # Alone, nobody reads what changed (sync_presences empties it with peers only):
                # without this every player id ever seen would stay for the process's life.
                self.presences.changed.clear()
                self.social.changed_parties.clear()
            self._schedule_sweep(now)

        self._timers.schedule("sweep", now + SWEEP_INTERVAL_S, sweep)

    def _schedule_tick(self, now: float) -> None:
        self._timers.schedule("tick", now + self.config.game_tick_s, self._tick)

    def _tick(self, now: float) -> None:
        self._tick_number += 1
        listeners = tuple(self._sockets)
        data = {
            "tick_number": self._tick_number,
            "active_players": len(self.presences),
            **mythos_time(self._wall_clock()),  # v1.1: the Mythos clock rides on every tick
        }
        self._emit(Emit("game_tick", data, listeners))
        self._schedule_tick(now)
