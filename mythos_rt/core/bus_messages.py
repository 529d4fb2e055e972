"""MythosMUD's NATS subjects and payloads (PROTOCOL.md section 16): build, parse, check, render.

Pure: no I/O, no clock reads (timestamps and ids are passed in), no logging.

Every inbound payload is structured strictly with cattrs: unknown keys are refused, a string field
takes only a JSON string (no ``5`` → ``"5"``), and the subject must agree with the payload.  Any
problem is a :class:`BusMessageError` with a short reason, meant for the dead-letter file and the
log, never for a client.

Decisions where the contract is silent:

* Optional fields may be absent or ``null`` (MythosMUD's Python publishers write ``None`` as
  ``null``).
* Channels whose rendering names the speaker (all but ``system``) require ``sender_name``: a line
  MythosMUD would render as "None says: …" is refused instead.
* ``admin`` travels on ``chat.system`` (there is no admin subject), as does ``system``.
* When the payload repeats the subject's id (``room_id`` for say/emote/pose, ``subzone`` for
  local, ``target_id`` for whisper, ``party_id`` for party, ``room_id`` for room events), the two
  must be equal.
* Ids and names are at most 256 characters; a payload over 256 KiB is refused before parsing;
  strings holding lone UTF-16 surrogates (``"\\ud800"``) and non-finite numbers are refused, as
  for client frames (they could not be sent on to a browser).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias, TypeVar, get_args, get_origin

import attrs
import cattrs

Channel: TypeAlias = Literal[
    "say", "local", "global", "whisper", "emote", "pose", "system", "admin", "party"
]
SpeakerKind: TypeAlias = Literal["player", "npc", "system"]
RoomEventType: TypeAlias = Literal["player_entered", "player_left"]

CHANNELS: Final = frozenset(get_args(Channel))
SPEAKER_KINDS: Final = frozenset(get_args(SpeakerKind))
ROOM_EVENT_TYPES: Final = frozenset(get_args(RoomEventType))

_T = TypeVar("_T")

MAX_CONTENT_CHARS: Final = 10_000
MAX_FIELD_CHARS: Final = 256
MAX_PAYLOAD_BYTES: Final = 256 * 1024

# What an instance subscribes to.  Only the two room events this project understands are
# subscribed: MythosMUD publishes many other ``events.*`` subjects, and each would otherwise be
# a dead letter.  ``mythos_rt.>`` holds this project's own subjects (docs/NATS.md).
SUBSCRIPTIONS: Final = (
    "chat.>",
    "events.player_entered.*",
    "events.player_left.*",
    "mythos_rt.>",
)
OWN_PREFIX: Final = "mythos_rt."


class BusMessageError(ValueError):
    """A subject or payload this project refuses; ``reason`` is short and safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- subjects ---------------------------------------------------------------------------------

# Subject kind -> (subject pattern, the payload field repeating the subject's id).
_CHAT_SUBJECTS: Final[dict[str, tuple[str, str | None]]] = {
    "say": ("chat.say.room.{}", "room_id"),
    "local": ("chat.local.subzone.{}", "subzone"),
    "global": ("chat.global", None),
    "whisper": ("chat.whisper.player.{}", "target_id"),
    "system": ("chat.system", None),
    "emote": ("chat.emote.room.{}", "room_id"),
    "pose": ("chat.pose.room.{}", "room_id"),
    "party": ("chat.party.group.{}", "party_id"),
}
# Channel -> the subject kind it travels on.
_SUBJECT_KIND: Final[dict[str, str]] = {channel: channel for channel in _CHAT_SUBJECTS} | {
    "admin": "system"
}
# A NATS subject token: no separators, wildcards or blanks.
_TOKEN = re.compile(r"[^\s.*>]{1,256}")


@attrs.frozen
class ChatSubject:
    """A parsed chat subject: its kind (``say``, ``local``, …) and id (None for global/system)."""

    kind: str
    scope_id: str | None = None

    def __str__(self) -> str:
        pattern, _ = _CHAT_SUBJECTS[self.kind]
        return pattern.format(self.scope_id) if self.scope_id is not None else pattern


def _token(value: str, what: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise BusMessageError(f"{what} cannot be a subject token")
    return value


def chat_subject(channel: str, scope_id: str | None = None) -> str:
    """The subject a message on ``channel`` travels on, e.g. ``chat.say.room.{room_id}``."""
    kind = _SUBJECT_KIND.get(channel)
    if kind is None:
        raise BusMessageError(f"unknown channel {channel!r}")
    pattern, field = _CHAT_SUBJECTS[kind]
    if field is None:
        return pattern
    if scope_id is None:
        raise BusMessageError(f"{channel} needs a {field}")
    return pattern.format(_token(scope_id, field))


def say_subject(room_id: str) -> str:
    return chat_subject("say", room_id)


def local_subject(subzone: str) -> str:
    return chat_subject("local", subzone)


def global_subject() -> str:
    return chat_subject("global")


def whisper_subject(target_id: str) -> str:
    return chat_subject("whisper", target_id)


def system_subject() -> str:
    return chat_subject("system")


def emote_subject(room_id: str) -> str:
    return chat_subject("emote", room_id)


def pose_subject(room_id: str) -> str:
    return chat_subject("pose", room_id)


def party_subject(party_id: str) -> str:
    return chat_subject("party", party_id)


def parse_chat_subject(subject: str) -> ChatSubject:
    parts = subject.split(".")
    if parts[0] != "chat" or len(parts) < 2 or parts[1] not in _CHAT_SUBJECTS:
        raise BusMessageError("unknown chat subject")
    kind = parts[1]
    pattern, _ = _CHAT_SUBJECTS[kind]
    shape = pattern.split(".")
    if len(parts) != len(shape) or parts[:-1] != shape[:-1]:
        raise BusMessageError(f"malformed {kind} subject")
    if shape[-1] != "{}":
        return ChatSubject(kind)  # chat.global, chat.system
    return ChatSubject(kind, _token(parts[-1], "subject id"))


def room_event_subject(event_type: str, room_id: str) -> str:
    if event_type not in ROOM_EVENT_TYPES:
        raise BusMessageError(f"unknown room event {event_type!r}")
    return f"events.{event_type}.{_token(room_id, 'room_id')}"


def parse_room_event_subject(subject: str) -> tuple[str, str]:
    """``(event_type, room_id)`` of ``events.player_entered.{room_id}`` and its sibling."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != "events" or parts[1] not in ROOM_EVENT_TYPES:
        raise BusMessageError("unknown event subject")
    return parts[1], _token(parts[2], "subject id")


# --- field checks (attrs validators: an invalid payload cannot be built, inbound or outbound) --

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# UTC only: "Z" or "+00:00"; fractional seconds of any precision.
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(?:Z|\+00:00)")


def _check_uuid(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _UUID.fullmatch(value):
        raise ValueError(f"{attribute.name} is not a UUID")


def _check_timestamp(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    match = _TIMESTAMP.fullmatch(value)
    try:
        if match is None:
            raise ValueError
        datetime.fromisoformat(match.group(1))  # a real date and time
    except ValueError:
        raise ValueError(f"{attribute.name} is not an ISO 8601 UTC time") from None


def _check_content(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not 1 <= len(value) <= MAX_CONTENT_CHARS:
        raise ValueError(f"{attribute.name} must be 1..{MAX_CONTENT_CHARS} characters")


def _check_field(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not 1 <= len(value) <= MAX_FIELD_CHARS:
        raise ValueError(f"{attribute.name} must be 1..{MAX_FIELD_CHARS} characters")


def _one_of(allowed: frozenset[str]) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None and value not in allowed:
            raise ValueError(f"{attribute.name} {value!r} is not one of {sorted(allowed)}")

    return check


def _optional() -> Any:
    return attrs.field(default=None, validator=_check_field)


# --- payloads ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ChatPayload:
    """A MythosMUD chat message as it travels on ``chat.*``."""

    message_id: str = attrs.field(validator=_check_uuid)
    timestamp: str = attrs.field(validator=_check_timestamp)
    channel: Channel = attrs.field(validator=_one_of(CHANNELS))
    content: str = attrs.field(validator=_check_content)
    sender_id: str | None = _optional()
    sender_name: str | None = _optional()
    room_id: str | None = _optional()
    subzone: str | None = _optional()
    target_id: str | None = _optional()
    target_name: str | None = _optional()
    speaker_kind: SpeakerKind | None = attrs.field(default=None, validator=_one_of(SPEAKER_KINDS))
    party_id: str | None = _optional()


@attrs.frozen
class ChatMessage:
    subject: ChatSubject
    payload: ChatPayload


@attrs.frozen(kw_only=True)
class RoomEvent:
    """``events.player_entered.{room_id}`` / ``events.player_left.{room_id}``."""

    message_id: str = attrs.field(validator=_check_uuid)
    timestamp: str = attrs.field(validator=_check_timestamp)
    event_type: RoomEventType = attrs.field(validator=_one_of(ROOM_EVENT_TYPES))
    # A JSON object: compared, but left out of the hash (dicts have none).
    event_data: Mapping[str, Any] = attrs.field(hash=False)
    room_id: str | None = _optional()
    player_id: str | None = _optional()


# --- strict cattrs ----------------------------------------------------------------------------


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("lone UTF-16 surrogate") from None
    return value


def _strict_literal(value: object, type_: Any) -> object:
    allowed = get_args(type_)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"not one of {', '.join(allowed)}")
    return value


def _is_literal(type_: Any) -> bool:
    return get_origin(type_) is Literal


def _json_object(value: object, _: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


_JSON_OBJECT: Final = Mapping[str, Any]


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook_func(_is_literal, _strict_literal)
    converter.register_structure_hook_func(lambda t: t == _JSON_OBJECT, _json_object)
    return converter


_CONVERTER: Final = _make_converter()


def _first_reason(exc: BaseException) -> str:
    """A short reason from a cattrs error tree: the first failure, with the field it concerns."""
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown keys {sorted(exc.extra_fields)}"
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]}"
    if not isinstance(exc, BaseExceptionGroup):
        return str(exc) or type(exc).__name__
    first = exc.exceptions[0]
    reason = _first_reason(first)
    notes = " ".join(note for note in getattr(first, "__notes__", ()) if isinstance(note, str))
    field = re.search(r"@ attribute (\w+)", notes)
    if field is None or isinstance(first, KeyError | BaseExceptionGroup):
        return reason
    return f"{field.group(1)}: {reason}"


def _refuse_constant(name: str) -> object:
    raise ValueError(f"non-finite number {name}")


_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant)


def _load_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BusMessageError(f"payload over {MAX_PAYLOAD_BYTES} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BusMessageError("payload is not UTF-8") from None
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        raise BusMessageError("payload is not JSON") from None
    if not isinstance(value, dict):
        raise BusMessageError("payload is not a JSON object")
    return value


def _structure(value: dict[str, Any], cls: type[_T]) -> _T:
    try:
        return _CONVERTER.structure(value, cls)
    except Exception as exc:  # cattrs raises groups of anything the hooks raised
        raise BusMessageError(_first_reason(exc)) from None


# --- agreement between subject and payload ----------------------------------------------------


def _check_chat_agreement(subject: ChatSubject, payload: ChatPayload) -> None:
    if _SUBJECT_KIND[payload.channel] != subject.kind:
        raise BusMessageError(f"channel {payload.channel} on a {subject.kind} subject")
    _, field = _CHAT_SUBJECTS[subject.kind]
    if field is not None and getattr(payload, field) not in (None, subject.scope_id):
        raise BusMessageError(f"{field} differs from the subject's")
    if payload.channel != "system" and payload.sender_name is None:
        raise BusMessageError(f"sender_name required for {payload.channel}")


def decode_chat(subject: str, payload: bytes) -> ChatMessage:
    """Check and structure one ``chat.*`` message; raises :class:`BusMessageError`."""
    parsed = parse_chat_subject(subject)
    chat = _structure(_load_object(payload), ChatPayload)
    _check_chat_agreement(parsed, chat)
    return ChatMessage(parsed, chat)


def decode_room_event(subject: str, payload: bytes) -> RoomEvent:
    event_type, room_id = parse_room_event_subject(subject)
    event = _structure(_load_object(payload), RoomEvent)
    if event.event_type != event_type:
        raise BusMessageError(f"event_type {event.event_type} on a {event_type} subject")
    if event.room_id not in (None, room_id):
        raise BusMessageError("room_id differs from the subject's")
    return event


def check_inbound(subject: str, payload: bytes) -> str | None:
    """Why an inbound message must be refused, or None.  The bridge's default check.

    This project's own ``mythos_rt.*`` subjects only need to be a JSON object here; their
    schemas belong to the integration that defines them.
    """
    try:
        if subject.startswith("chat."):
            decode_chat(subject, payload)
        elif subject.startswith("events."):
            decode_room_event(subject, payload)
        elif subject.startswith(OWN_PREFIX):
            _load_object(payload)
        else:
            raise BusMessageError("unknown subject")
    except BusMessageError as exc:
        return exc.reason
    return None


# --- rendering, as MythosMUD renders it -------------------------------------------------------

_FORMATS: Final[dict[str, str]] = {
    "say": "{name} says: {content}",
    "local": "{name} (local): {content}",
    "global": "{name} (global): {content}",
    "emote": "{name} {content}",
    "pose": "{name} {content}",
    "system": "[SYSTEM] {content}",
    "admin": "[ADMIN] {name}: {content}",
    "whisper": "{name} whispers to you: {content}",
    "party": "{name} (party): {content}",
}


def render_chat(payload: ChatPayload) -> str:
    """The line a player sees, e.g. ``Zombie says: Braaains``."""
    return _FORMATS[payload.channel].format(name=payload.sender_name, content=payload.content)


# --- encoding our own messages ----------------------------------------------------------------


def format_bus_timestamp(epoch_s: float) -> str:
    """``2026-11-29T08:00:00.123456Z``: UTC with microseconds, as accepted on the bus."""
    if not math.isfinite(epoch_s):
        raise BusMessageError("time is not finite")
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dump(value: object) -> bytes:
    fields = _CONVERTER.unstructure(value)
    compact = {key: item for key, item in fields.items() if item is not None}
    return json.dumps(compact, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_chat(payload: ChatPayload, scope_id: str | None = None) -> tuple[str, bytes]:
    """``(subject, payload bytes)`` for an outgoing chat message.

    ``scope_id`` is the subject's id (room, subzone, target player or party); when None it is
    taken from the payload's matching field.  The result passes :func:`decode_chat`, so peers
    never dead-letter what we publish.
    """
    kind = _SUBJECT_KIND[payload.channel]
    _, field = _CHAT_SUBJECTS[kind]
    if scope_id is None and field is not None:
        scope_id = getattr(payload, field)
    subject = chat_subject(payload.channel, scope_id)
    _check_chat_agreement(parse_chat_subject(subject), payload)
    return subject, _dump(payload)


def outgoing_chat(
    channel: str,
    content: str,
    *,
    message_id: str,
    wall_now: float,
    sender_id: str | None = None,
    sender_name: str | None = None,
    scope_id: str | None = None,
    **optional: str,
) -> tuple[str, bytes]:
    """Build, check and encode one chat message of ours; raises :class:`BusMessageError`.

    ``optional`` takes the payload's other optional fields (``room_id``, ``target_name``, …).
    """
    try:
        payload = ChatPayload(
            message_id=message_id,
            timestamp=format_bus_timestamp(wall_now),
            channel=channel,  # type: ignore[arg-type]  # checked by the validator
            content=content,
            sender_id=sender_id,
            sender_name=sender_name,
            speaker_kind=optional.pop("speaker_kind", "player"),  # type: ignore[arg-type]
            **optional,
        )
    except (ValueError, TypeError) as exc:
        raise BusMessageError(str(exc)) from None
    return encode_chat(payload, scope_id)


def encode_room_event(event: RoomEvent) -> tuple[str, bytes]:
    if event.room_id is None:
        raise BusMessageError("room_id required to publish a room event")
    return room_event_subject(event.event_type, event.room_id), _dump(event)
