"""The cluster: this instance's link to the others over the bus (docs/NATS.md).

Runs only when a NATS URL is set (embedded mode has no cluster and the hub pays nothing).  It is
the hub's :class:`~mythos_rt.runtime.hub.Peers`: the hub delivers to its own sockets first and
hands the cluster what other instances must hear; the cluster publishes it, and feeds what other
instances (and outside MythosMUD services) publish back into the hub.

cluster.serve (in the root nursery, beside the hub)
├─ pump       inbound bus messages → replicas, deliveries, chat by scope; invalid → dead letters
├─ beat       a heartbeat every CLUSTER_HEARTBEAT_S: liveness, snapshot, repair after outages
└─ watch      instances silent for CLUSTER_DEAD_AFTER_S: their players turn linkdead here
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from mythos_rt.core import bus_messages, cluster
from mythos_rt.core.cluster import (
    ClusterMessageError,
    Delivery,
    PartyRecord,
    PresenceChange,
    PresenceRecord,
)
from mythos_rt.core.effects import Emit
from mythos_rt.core.presence import Presence
from mythos_rt.core.world import World
from mythos_rt.runtime.bus import Bus, BusMessage
from mythos_rt.runtime.hub import Hub
from mythos_rt.runtime.metrics import Metrics

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0
RejectSink = Callable[[BusMessage, str], None]  # where refused inbound messages go


class Cluster:
    def __init__(
        self,
        bus: Bus,
        hub: Hub,
        metrics: Metrics,
        *,
        heartbeat_s: float,
        dead_after_s: float,
        reject: RejectSink | None = None,
    ) -> None:
        self._bus = bus
        self._hub = hub
        self._world: World = hub.world
        self._metrics = metrics
        self._heartbeat_s = heartbeat_s
        self._dead_after_s = dead_after_s
        self._reject = reject
        self._last_seen: dict[str, float] = {}  # instance id -> trio time of its last message
        self._beat_now = trio.Event()

    @property
    def instance_id(self) -> str:
        return self._bus.instance_id

    # --- the hub's Peers -----------------------------------------------------------------------

    def forward(self, delivery: Delivery) -> None:
        self._bus.publish(cluster.DELIVER, cluster.encode(delivery))

    def forward_chat(self, event: Emit, sender: Presence) -> None:
        try:
            subject, payload = chat_for_bus(event, sender, self._world)
        except bus_messages.BusMessageError as exc:  # ours, so a bug: this line stays local
            log.error("chat line not published: %s", exc)
            return
        self._bus.publish(subject, payload)

    def presences_changed(self, records: list[PresenceRecord], gone: list[str]) -> None:
        for record in records:
            change = PresenceChange(self.instance_id, up=record)
            self._bus.publish(cluster.PRESENCE, cluster.encode(change))
        for player_id in gone:
            change = PresenceChange(self.instance_id, down=player_id)
            self._bus.publish(cluster.PRESENCE, cluster.encode(change))

    def session_retired(self, player_id: str, session_id: str) -> None:
        retired = cluster.RetiredSession(self.instance_id, player_id, session_id)
        self._bus.publish(cluster.RETIRED, cluster.encode(retired))

    def party_changed(self, record: PartyRecord, disbanded: bool, members_told: bool) -> None:
        change = cluster.PartyChange(self.instance_id, record, disbanded, members_told)
        self._bus.publish(cluster.PARTY, cluster.encode(change))

    def run_at_owner(self, command: cluster.PartyCommand) -> None:
        self._bus.publish(cluster.PARTY_COMMAND, cluster.encode(command))

    # --- tasks ---------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._hub.peers = self
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump)
                nursery.start_soon(self._beat)
                nursery.start_soon(self._watch)
                self._bus.publish(cluster.HELLO, b"{}")  # the others answer with a heartbeat
                task_status.started()
        finally:
            self._hub.peers = None

    def goodbye(self) -> None:
        """The drain ended this instance's presences: tell the others now."""
        self._hub.sync_presences()

    async def _beat(self) -> None:
        while True:
            self._hub.sync_presences()
            heartbeat = cluster.Heartbeat(
                self.instance_id,
                tuple(self._hub.local_records()),
                tuple(self._hub.local_parties()),
            )
            self._bus.publish(cluster.HEARTBEAT, cluster.encode(heartbeat))
            with trio.move_on_after(self._heartbeat_s):
                await self._beat_now.wait()
            self._beat_now = trio.Event()

    async def _watch(self) -> None:
        while True:
            await trio.sleep(WATCH_INTERVAL_S)
            now = trio.current_time()
            if not self._bus.connected:
                # Our own link is down: silence tells nothing about the others, so their clocks
                # are held; the heartbeats after the reconnect repair every replica.
                self._last_seen = dict.fromkeys(self._last_seen, now)
                continue
            for instance_id in cluster.lost_instances(self._last_seen, now, self._dead_after_s):
                del self._last_seen[instance_id]
                if not any(p.instance_id == instance_id for p in self._hub.presences):
                    # Nobody of it here: a drained instance (its players' ends were published)
                    # goes silent too, and is no alarm (one was logged and counted per deploy).
                    log.info("instance %s went away holding nobody", instance_id)
                    continue
                log.warning("instance %s is silent: its players are linkdead here", instance_id)
                self._metrics.inc("cluster_instances_lost")
                self._hub.instance_lost(instance_id)

    async def _pump(self) -> None:
        async for message in self._bus.inbound:
            try:
                self._receive(message)
            except (ClusterMessageError, bus_messages.BusMessageError) as exc:
                self._refuse(message, str(exc))
            except Exception:
                # A bug, or a message the checks let through that the hub cannot take: one
                # message is lost, not the instance (an escape here ended the whole server).
                self._metrics.inc("cluster_errors")
                log.exception("cluster message on %s not handled", message.subject)

    # --- inbound -------------------------------------------------------------------------------

    def _receive(self, message: BusMessage) -> None:
        subject, origin = message.subject, message.origin
        if origin == self.instance_id:
            return  # never deliver our own message twice (the bridge drops them too)
        if subject.startswith("chat."):
            self._chat(message)
        elif subject.startswith("events."):
            self._room_event(message)
        elif origin is None:
            self._refuse(message, "instance subjects need an instance header")
        else:
            self._from_instance(origin, subject, message.payload)

    def _from_instance(self, origin: str, subject: str, payload: bytes) -> None:
        self._last_seen[origin] = trio.current_time()
        if subject == cluster.HEARTBEAT:
            self._snapshot(cluster.decode_heartbeat(payload))
        elif subject == cluster.HELLO:
            self._beat_now.set()
        elif subject == cluster.PRESENCE:
            self._presence(cluster.decode_presence_change(payload))
        elif subject == cluster.DELIVER:
            self._hub.deliver_from_peer(cluster.decode_delivery(payload))
        elif subject == cluster.RETIRED:
            retired = cluster.decode_retired(payload)
            self._hub.retire_from_peer(retired.player_id, retired.session_id)
        elif subject == cluster.PARTY:
            self._hub.party_from_peer(cluster.decode_party_change(payload))
        elif subject == cluster.PARTY_COMMAND:
            command = cluster.decode_party_command(payload)
            if command.to_instance == self.instance_id:
                self._hub.party_command_from_peer(command)
        else:
            raise ClusterMessageError(f"unknown subject {subject}")

    def _snapshot(self, heartbeat: cluster.Heartbeat) -> None:
        """A heartbeat is the sender's whole truth: upsert what it lists, drop what it does not."""
        listed = {record.player_id for record in heartbeat.presences}
        for record in heartbeat.presences:
            self._hub.upsert_replica(record, heartbeat.instance_id)
        for presence in list(self._hub.presences):
            if presence.instance_id == heartbeat.instance_id and presence.player_id not in listed:
                self._hub.drop_replica(presence.player_id, heartbeat.instance_id)
        self._hub.parties_snapshot(heartbeat.instance_id, heartbeat.parties)

    def _presence(self, change: PresenceChange) -> None:
        if change.up is not None:
            self._hub.upsert_replica(change.up, change.instance_id)
        if change.down is not None:
            self._hub.drop_replica(change.down, change.instance_id)

    def _chat(self, message: BusMessage) -> None:
        chat = bus_messages.decode_chat(message.subject, message.payload)
        payload = chat.payload
        if payload.channel == "party" and message.origin is not None:
            return  # party lines between instances travel as deliveries (their ids are known)
        # The payload's party_id is optional; the subject always names the party.
        party_id = chat.subject.scope_id if chat.subject.kind == "party" else None
        self._hub.deliver_chat_from_peer(
            incoming_chat_data(payload),
            payload.room_id,
            payload.subzone,
            payload.target_id,
            party_id,
        )

    def _room_event(self, message: BusMessage) -> None:
        event = bus_messages.decode_room_event(message.subject, message.payload)
        if message.origin is not None or event.room_id is None:
            return  # ours travel as deliveries; a room event without a room reaches nobody
        self._hub.deliver_room_event(event.event_type, dict(event.event_data), event.room_id)

    def _refuse(self, message: BusMessage, reason: str) -> None:
        self._metrics.inc("nats_invalid_messages")
        if self._reject is not None:
            self._reject(message, reason)


def chat_for_bus(event: Emit, sender: Presence, world: World) -> tuple[str, bytes]:
    """A chat line of ours as MythosMUD publishes it: its subject and payload."""
    data = event.data
    channel = str(data["channel"])
    room = world.rooms.get(sender.room_id)
    in_room = channel in ("say", "emote", "pose", "local")
    try:
        payload = bus_messages.ChatPayload(
            message_id=str(data["message_id"]),
            timestamp=str(data["timestamp"]),
            channel=channel,  # type: ignore[arg-type]  # one of SCOPED_CHAT, chosen by the hub
            content=str(data["original_content"]),
            sender_id=sender.player_id,
            sender_name=sender.name,
            room_id=sender.room_id if in_room else None,
            subzone=room.subzone if room is not None and channel == "local" else None,
            target_id=_optional_str(data.get("target_id")),
            target_name=_optional_str(data.get("target_name")),
            speaker_kind="player",
        )
    except (ValueError, TypeError) as exc:
        raise bus_messages.BusMessageError(str(exc)) from None
    return bus_messages.encode_chat(payload)


def incoming_chat_data(payload: bus_messages.ChatPayload) -> dict[str, object]:
    """The ``chat_message`` data a player receives for a line from the bus."""
    data: dict[str, object] = {
        "sender_id": payload.sender_id,
        "player_name": payload.sender_name or "",
        "channel": payload.channel,
        "message": bus_messages.render_chat(payload),
        "message_id": payload.message_id,
        "timestamp": payload.timestamp,
        "original_content": payload.content,
    }
    if payload.target_id is not None:
        data["target_id"] = payload.target_id
        data["target_name"] = payload.target_name
    return data


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
