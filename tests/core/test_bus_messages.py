"""MythosMUD's chat and room-event subjects and payloads on the bus (PROTOCOL.md section 16)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mythos_rt.core import bus_messages as bm

MESSAGE_ID = "6f1c1c9e-7d1a-4c9a-9a43-6d2d6c1f0a11"
TIMESTAMP = "2026-11-29T08:00:00Z"


def chat(**fields: Any) -> dict[str, Any]:
    base = {
        "message_id": MESSAGE_ID,
        "timestamp": TIMESTAMP,
        "channel": "say",
        "content": "Braaains",
        "sender_name": "Zombie",
    }
    return {key: value for key, value in (base | fields).items() if value is not ...}


def raw(value: object) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


# --- subjects ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("built", "subject"),
    [
        (bm.say_subject("earth_arkham_quad"), "chat.say.room.earth_arkham_quad"),
        (bm.local_subject("miskatonic_university"), "chat.local.subzone.miskatonic_university"),
        (bm.global_subject(), "chat.global"),
        (bm.whisper_subject("p-7"), "chat.whisper.player.p-7"),
        (bm.system_subject(), "chat.system"),
        (bm.emote_subject("r1"), "chat.emote.room.r1"),
        (bm.pose_subject("r1"), "chat.pose.room.r1"),
        (bm.party_subject("g1"), "chat.party.group.g1"),
        (bm.chat_subject("admin"), "chat.system"),
        (bm.room_event_subject("player_entered", "r1"), "events.player_entered.r1"),
        (bm.room_event_subject("player_left", "r1"), "events.player_left.r1"),
    ],
)
def test_subject_builders(built: str, subject: str) -> None:
    assert built == subject


@pytest.mark.parametrize(
    ("subject", "kind", "scope_id"),
    [
        ("chat.say.room.r1", "say", "r1"),
        ("chat.local.subzone.sz", "local", "sz"),
        ("chat.global", "global", None),
        ("chat.whisper.player.p1", "whisper", "p1"),
        ("chat.system", "system", None),
        ("chat.emote.room.r1", "emote", "r1"),
        ("chat.pose.room.r1", "pose", "r1"),
        ("chat.party.group.g1", "party", "g1"),
    ],
)
def test_subject_parser_round_trips(subject: str, kind: str, scope_id: str | None) -> None:
    parsed = bm.parse_chat_subject(subject)
    assert (parsed.kind, parsed.scope_id) == (kind, scope_id)
    assert str(parsed) == subject


@pytest.mark.parametrize(
    "subject",
    [
        "chat",
        "chat.shout.room.r1",
        "chat.say.room",
        "chat.say.zone.r1",
        "chat.say.room.r1.extra",
        "chat.global.x",
        "chat.systems",
        "events.player_entered.r1",
    ],
)
def test_bad_chat_subjects_are_refused(subject: str) -> None:
    with pytest.raises(bm.BusMessageError):
        bm.parse_chat_subject(subject)


@pytest.mark.parametrize(
    "build",
    [
        lambda: bm.say_subject("a.b"),
        lambda: bm.say_subject(""),
        lambda: bm.whisper_subject("*"),
        lambda: bm.party_subject(">"),
        lambda: bm.local_subject("two words"),
        lambda: bm.chat_subject("shout", "r1"),
        lambda: bm.chat_subject("say"),
        lambda: bm.room_event_subject("player_waved", "r1"),
    ],
)
def test_builders_refuse_what_cannot_be_a_subject(build: Any) -> None:
    with pytest.raises(bm.BusMessageError):
        build()


# --- inbound chat: valid ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "payload", "line"),
    [
        ("chat.say.room.r1", chat(speaker_kind="npc"), "Zombie says: Braaains"),
        ("chat.say.room.r1", chat(room_id="r1", sender_id=None), "Zombie says: Braaains"),
        ("chat.local.subzone.sz", chat(channel="local", subzone="sz"), "Zombie (local): Braaains"),
        ("chat.global", chat(channel="global"), "Zombie (global): Braaains"),
        ("chat.emote.room.r1", chat(channel="emote", content="shambles"), "Zombie shambles"),
        ("chat.pose.room.r1", chat(channel="pose", content="is rotting"), "Zombie is rotting"),
        ("chat.system", chat(channel="system", sender_name=...), "[SYSTEM] Braaains"),
        ("chat.system", chat(channel="admin"), "[ADMIN] Zombie: Braaains"),
        (
            "chat.whisper.player.p1",
            chat(channel="whisper", target_id="p1", target_name="Armitage"),
            "Zombie whispers to you: Braaains",
        ),
        ("chat.party.group.g1", chat(channel="party"), "Zombie (party): Braaains"),
        ("chat.say.room.r1", chat(timestamp="2026-11-29T08:00:00.5Z"), "Zombie says: Braaains"),
        (
            "chat.say.room.r1",
            chat(timestamp="2026-11-29T08:00:00.123456789+00:00"),
            "Zombie says: Braaains",
        ),
        ("chat.say.room.r1", chat(message_id=MESSAGE_ID.upper()), "Zombie says: Braaains"),
        ("chat.say.room.r1", chat(content="x" * 10_000), "Zombie says: " + "x" * 10_000),
        ("chat.say.room.r1", chat(content="Ph'nglui 🐙"), "Zombie says: Ph'nglui 🐙"),
    ],
)
def test_valid_chat_is_decoded_and_rendered(
    subject: str, payload: dict[str, Any], line: str
) -> None:
    message = bm.decode_chat(subject, raw(payload))
    assert bm.render_chat(message.payload) == line
    assert bm.check_inbound(subject, raw(payload)) is None


# --- inbound chat: refused --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "payload", "reason"),
    [
        ("chat.say.room.r1", chat(extra=1), "unknown keys ['extra']"),
        ("chat.say.room.r1", chat(instance_id="i1"), "unknown keys ['instance_id']"),
        ("chat.say.room.r1", chat(content=...), "missing content"),
        ("chat.say.room.r1", chat(message_id=...), "missing message_id"),
        ("chat.say.room.r1", chat(message_id="not-a-uuid"), "message_id is not a UUID"),
        ("chat.say.room.r1", chat(message_id=5), "message_id: expected a string, got int"),
        ("chat.say.room.r1", chat(content=5), "content: expected a string, got int"),
        ("chat.say.room.r1", chat(sender_name=["x"]), "sender_name: expected a string, got list"),
        ("chat.say.room.r1", chat(content=""), "content must be 1..10000 characters"),
        ("chat.say.room.r1", chat(content="x" * 10_001), "content must be 1..10000 characters"),
        ("chat.say.room.r1", chat(sender_name="x" * 257), "sender_name must be 1..256 characters"),
        ("chat.say.room.r1", chat(content="\ud800"), "content: lone UTF-16 surrogate"),
        ("chat.say.room.r1", chat(channel="shout"), "channel: not one of"),
        ("chat.say.room.r1", chat(channel=1), "channel: not one of"),
        ("chat.say.room.r1", chat(speaker_kind="ghost"), "speaker_kind: not one of"),
        ("chat.say.room.r1", chat(channel="local"), "channel local on a say subject"),
        ("chat.global", chat(channel="say"), "channel say on a global subject"),
        ("chat.say.room.r1", chat(channel="admin"), "channel admin on a say subject"),
        ("chat.say.room.r1", chat(room_id="r2"), "room_id differs from the subject's"),
        ("chat.whisper.player.p1", chat(channel="whisper", target_id="p2"), "target_id differs"),
        ("chat.say.room.r1", chat(sender_name=...), "sender_name required for say"),
        ("chat.say.room.r1", chat(sender_name=None), "sender_name required for say"),
        ("chat.shout.room.r1", chat(), "unknown chat subject"),
        ("chat.say.room.r1", b"\xff\xfe{}", "payload is not UTF-8"),
        ("chat.say.room.r1", b"{", "payload is not JSON"),
        ("chat.say.room.r1", b'{"a": NaN}', "payload is not JSON"),
        ("chat.say.room.r1", b"[1]", "payload is not a JSON object"),
        ("chat.say.room.r1", b"[" * 100_000, "payload is not JSON"),
        ("chat.say.room.r1", b" " * (256 * 1024 + 1), "payload over 262144 bytes"),
    ],
)
def test_invalid_chat_is_refused_with_a_reason(subject: str, payload: Any, reason: str) -> None:
    with pytest.raises(bm.BusMessageError) as caught:
        bm.decode_chat(subject, raw(payload))
    assert caught.value.reason.startswith(reason)
    assert bm.check_inbound(subject, raw(payload)) == caught.value.reason


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-29T08:00:00+01:00",
        "2026-11-29T08:00:00-00:00",
        "2026-11-29T08:00:00+0000",
        "2026-11-29T08:00:00",
        "2026-11-29T08:00:00z",
        "2026-11-29 08:00:00Z",
        "2026-13-29T08:00:00Z",
        "2026-02-30T08:00:00Z",
        "2026-11-29T08:00:00.Z",
        "2026-11-29T08:00:00.1234567890Z",
        "yesterday",
    ],
)
def test_timestamps_other_than_utc_iso_are_refused(timestamp: str) -> None:
    with pytest.raises(bm.BusMessageError, match="timestamp is not an ISO 8601 UTC time"):
        bm.decode_chat("chat.say.room.r1", raw(chat(timestamp=timestamp)))


# --- room events ------------------------------------------------------------------------------


def event(**fields: Any) -> dict[str, Any]:
    base = {
        "message_id": MESSAGE_ID,
        "timestamp": TIMESTAMP,
        "event_type": "player_entered",
        "event_data": {"player_name": "Armitage"},
    }
    return {key: value for key, value in (base | fields).items() if value is not ...}


@pytest.mark.parametrize(
    ("subject", "payload"),
    [
        ("events.player_entered.r1", event()),
        ("events.player_entered.r1", event(room_id="r1", player_id="p1")),
        ("events.player_left.r1", event(event_type="player_left", event_data={})),
        ("events.player_left.r1", event(event_type="player_left", room_id=None)),
    ],
)
def test_valid_room_events(subject: str, payload: dict[str, Any]) -> None:
    decoded = bm.decode_room_event(subject, raw(payload))
    assert decoded.event_data == payload["event_data"]
    assert bm.check_inbound(subject, raw(payload)) is None


@pytest.mark.parametrize(
    ("subject", "payload", "reason"),
    [
        ("events.player_entered.r1", event(extra=True), "unknown keys ['extra']"),
        ("events.player_entered.r1", event(event_data=[1]), "event_data: expected a JSON object"),
        ("events.player_entered.r1", event(event_data=...), "missing event_data"),
        ("events.player_entered.r1", event(event_type="player_left"), "event_type player_left"),
        ("events.player_entered.r1", event(event_type="waved"), "event_type: not one of"),
        ("events.player_entered.r1", event(room_id="r2"), "room_id differs"),
        ("events.player_entered.r1", event(timestamp="2026-11-29T08:00:00+02:00"), "timestamp"),
        ("events.player_waved.r1", event(), "unknown event subject"),
        ("events.player_entered", event(), "unknown event subject"),
    ],
)
def test_invalid_room_events(subject: str, payload: dict[str, Any], reason: str) -> None:
    problem = bm.check_inbound(subject, raw(payload))
    assert problem is not None and problem.startswith(reason)


# --- other subjects ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "payload", "problem"),
    [
        ("mythos_rt.presence.i1", b'{"anything": [1, 2]}', None),
        ("mythos_rt.presence.i1", b"[]", "payload is not a JSON object"),
        ("mythos_rt.presence.i1", b"\xc3\x28", "payload is not UTF-8"),
        ("orders.new", b"{}", "unknown subject"),
    ],
)
def test_own_and_unknown_subjects(subject: str, payload: bytes, problem: str | None) -> None:
    assert bm.check_inbound(subject, payload) == problem


# --- outgoing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "scope_id", "optional", "subject"),
    [
        ("say", "r1", {"room_id": "r1"}, "chat.say.room.r1"),
        ("local", "sz", {}, "chat.local.subzone.sz"),
        ("global", None, {}, "chat.global"),
        ("whisper", "p2", {"target_name": "Wilmarth"}, "chat.whisper.player.p2"),
        ("emote", "r1", {}, "chat.emote.room.r1"),
        ("pose", None, {"room_id": "r1"}, "chat.pose.room.r1"),
        ("party", "g1", {"party_id": "g1"}, "chat.party.group.g1"),
        ("admin", None, {}, "chat.system"),
    ],
)
def test_outgoing_chat_round_trips(
    channel: str, scope_id: str | None, optional: dict[str, str], subject: str
) -> None:
    built_subject, payload = bm.outgoing_chat(
        channel,
        "hello",
        message_id=MESSAGE_ID,
        wall_now=1_796_000_000.25,
        sender_id="p1",
        sender_name="Armitage",
        scope_id=scope_id,
        **optional,
    )
    assert built_subject == subject
    decoded = bm.decode_chat(subject, payload).payload
    assert (decoded.channel, decoded.content, decoded.sender_name) == (channel, "hello", "Armitage")
    assert decoded.speaker_kind == "player"
    assert decoded.timestamp.endswith(".250000Z")
    assert "null" not in payload.decode()


@pytest.mark.parametrize(
    ("channel", "content", "scope_id", "optional"),
    [
        ("say", "", "r1", {}),
        ("say", "x" * 10_001, "r1", {}),
        ("say", "hi", None, {}),
        ("say", "hi", "r1", {"room_id": "r2"}),
        ("say", "hi", "a.b", {}),
        ("shout", "hi", "r1", {}),
        ("say", "hi", "r1", {"speaker_kind": "ghost"}),
    ],
)
def test_outgoing_chat_refuses_what_peers_would_refuse(
    channel: str, content: str, scope_id: str | None, optional: dict[str, str]
) -> None:
    with pytest.raises(bm.BusMessageError):
        bm.outgoing_chat(
            channel,
            content,
            message_id=MESSAGE_ID,
            wall_now=1_796_000_000.0,
            sender_name="Armitage",
            scope_id=scope_id,
            **optional,
        )


def test_room_event_round_trips() -> None:
    sent = bm.RoomEvent(
        message_id=MESSAGE_ID,
        timestamp=bm.format_bus_timestamp(1_796_000_000.0),
        event_type="player_left",
        event_data={"player_name": "Armitage", "direction": "north"},
        room_id="r1",
        player_id="p1",
    )
    subject, payload = bm.encode_room_event(sent)
    assert subject == "events.player_left.r1"
    assert bm.decode_room_event(subject, payload) == sent
