"""Wire protocol: client frames in, server frames out (PROTOCOL.md sections 4, 6, 7).

Pure: no I/O, no clock reads (timestamps are passed in), no logging.

Decisions where the contract is silent or contradicts itself (section 6 vs section 7):

* A frame with no ``"type"`` key is ``invalid_format``/``missing_required_field`` (step 7).
  A ``"type"`` that is present but not a known string is ``invalid_command``
  ``"Unknown message type: <t>"`` (section 6); non-strings are shown as JSON (``5``, ``null``).
* CSRF (step 8) is checked before the type is looked up, so a frame without a valid token learns
  nothing about which types exist.
* ``message`` is unwrapped once. If it is a string that fails to parse, or parses to something
  other than an object, the frame is not wrapped and is used as is. Nesting too deep for the
  parser is ``depth_limit_exceeded`` on either level.
* The CSRF token is the first of ``csrfToken``, ``csrf_token`` present in the frame; a present
  non-string (``null`` included) is ``csrf_invalid_type``. The inner frame's token, when it has
  one, overrides the outer frame's.
* Step 3 also refuses non-finite numbers (``NaN``, ``Infinity``, ``1e999``) and lone UTF-16
  surrogates (``"\\ud800"``): both would make frames we echo back unencodable for browsers.
* ``data`` may be absent (treated as ``{}``), but when present it must be an object. Absent
  optional fields take their defaults; present fields must have exactly the right type (no
  coercion, ``null`` is not a default). ``client_error_report`` accepts ``null`` for its strings.
* Schema errors carry ``details.field`` as a path (``data.args[1]``); so does
  ``missing_required_field`` (``type``).
"""

from __future__ import annotations

import functools
import hmac
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Final, TypeAlias

import attrs

# --- limits -----------------------------------------------------------------------------------


@attrs.frozen
class FrameLimits:
    """Validation limits of section 7; defaults match settings.py."""

    max_frame_bytes: int = 10240
    max_depth: int = 10
    max_string_chars: int = 10000


# --- client messages (section 6) --------------------------------------------------------------


@attrs.frozen
class GameCommand:
    """``command`` / ``game_command``: the raw command word and its arguments, verbatim."""

    command: str
    args: tuple[str, ...] = ()


@attrs.frozen
class Chat:
    """Legacy ``chat``: same as ``say <message>``."""

    message: str


@attrs.frozen
class Ping:
    """``ping``: answered with ``pong`` to the same socket."""


@attrs.frozen
class FollowResponse:
    request_id: str
    accept: bool = False


@attrs.frozen
class PartyInviteResponse:
    invite_id: str
    accept: bool = False


@attrs.frozen
class RefreshToken:
    token: str


@attrs.frozen
class ClientErrorReport:
    """Logged, never answered; ``context`` is any JSON value."""

    error_type: str | None = None
    message: str | None = None
    context: object = None


ClientMessage: TypeAlias = (
    GameCommand
    | Chat
    | Ping
    | FollowResponse
    | PartyInviteResponse
    | RefreshToken
    | ClientErrorReport
)


# --- error frames (section 4) -----------------------------------------------------------------


@attrs.frozen
class FrameError:
    """An error frame; the socket stays open after it is sent."""

    error_type: str
    message: str
    user_friendly: str
    details: Mapping[str, object] = attrs.field(factory=dict)

    def to_json(self, player_id: str | None) -> str:
        """The frame's exact wire form; key order is kept for the web client."""
        details = dict(self.details)
        if player_id is not None:
            details = {"player_id": player_id, **details}
            details["player_id"] = player_id
        return encode_json(
            {
                "type": "error",
                "error_type": self.error_type,
                "message": self.message,
                "user_friendly": self.user_friendly,
                "details": details,
            }
        )


_MAX_RETRY_S: Final = 3600.0


def rate_limit_error(retry_after_s: float, limit: int) -> FrameError:
    """The ``rate_limit_exceeded`` frame of section 8."""
    # Rounded to ms first so float noise (3.0000000001) doesn't read as one more second; capped
    # because a zero limit reports an infinite wait, which has no integer.
    seconds = max(1, math.ceil(round(min(retry_after_s, _MAX_RETRY_S), 3)))
    unit = "second" if seconds == 1 else "seconds"
    return FrameError(
        "rate_limit_exceeded",
        f"Message rate limit exceeded. Limit: {limit} messages per minute. "
        f"Try again in {seconds} seconds.",
        f"You are sending messages too quickly. Please wait {seconds} {unit} and try again.",
        {"error_type": "rate_limit_exceeded", "retry_after": seconds},
    )


# --- server frames (section 4) ----------------------------------------------------------------

# One encoder for every outgoing frame. json.dumps() with options builds a new encoder per call;
# this sits on the broadcast path. allow_nan=False: NaN is not JSON and browsers refuse it.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json(obj: object) -> str:
    """Compact UTF-8 JSON, the form of every frame the server sends."""
    return _ENCODER.encode(obj)


def format_timestamp(epoch_s: float) -> str:
    """``2026-11-25T19:33:22Z``: UTC, truncated to whole seconds."""
    return _second_text(math.floor(epoch_s))


@functools.lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    # Every frame carries one; a busy room stamps thousands within the same second, and
    # strftime was ~6% of a saturated instance (py-spy, scripts/bench_cluster.py).
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_event(
    event_type: str,
    data: Mapping[str, object],
    *,
    sequence_number: int,
    timestamp: float,
    room_id: str | None = None,
    player_id: str | None = None,
) -> str:
    """One event frame; ``room_id`` and ``player_id`` appear only when set."""
    frame: dict[str, object] = {
        "event_type": event_type,
        "timestamp": format_timestamp(timestamp),
        "sequence_number": sequence_number,
        "data": data if isinstance(data, dict) else dict(data),
    }
    if room_id is not None:
        frame["room_id"] = room_id
    if player_id is not None:
        frame["player_id"] = player_id
    return encode_json(frame)


# --- decoding client frames (section 7) -------------------------------------------------------

_VALIDATION_FRIENDLY: Final = "Invalid format provided"
_CSRF_KEYS: Final = ("csrfToken", "csrf_token")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# Sub-codes after which a `message` string simply isn't a wrapped frame.
_NOT_WRAPPED: Final = frozenset({"json_parse_error", "invalid_type"})

_Json: TypeAlias = dict[str, object]


class _Rejected(Exception):
    """Internal: carries the error frame out of the validation steps."""

    def __init__(self, error: FrameError, sub_code: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.sub_code = sub_code


def _invalid(sub_code: str, detail: str, field: str | None = None) -> _Rejected:
    details: dict[str, object] = {"error_type": sub_code}
    if field is not None:
        details["field"] = field
    error = FrameError(
        "invalid_format", f"Message validation failed: {detail}", _VALIDATION_FRIENDLY, details
    )
    return _Rejected(error, sub_code)


def decode_client_frame(
    raw: str | bytes, limits: FrameLimits, csrf_tokens: Collection[str] | None
) -> ClientMessage | FrameError:
    """Steps 2–9 of section 7 (the caller does step 1, rate limiting).

    ``csrf_tokens`` is None when CSRF is not required; otherwise the frame's token must be one
    of them.
    """
    try:
        return _decode(raw, limits, csrf_tokens)
    except _Rejected as rejected:
        return rejected.error


def _decode(
    raw: str | bytes, limits: FrameLimits, csrf_tokens: Collection[str] | None
) -> ClientMessage:
    if isinstance(raw, bytes):
        raise _invalid("invalid_type", "Binary frames are not supported")
    outer = _parse_checked(raw, limits)
    frame = _unwrap(outer, limits)
    if "type" not in frame:
        raise _invalid("missing_required_field", "Missing required field: type", "type")
    if csrf_tokens is not None:
        _check_csrf(_csrf_value(frame, outer), csrf_tokens)
    return _build(frame)


def _parse_checked(text: str, limits: FrameLimits) -> _Json:
    """Steps 2–5 for one level of the frame."""
    obj = _parse_object(text, limits)
    _check_contents(obj, limits)
    return obj


def _parse_object(text: str, limits: FrameLimits) -> _Json:
    """Steps 2–3: size, JSON, an object at the root."""
    _check_size(text, limits.max_frame_bytes)
    obj = _parse_json(text)
    if not isinstance(obj, dict):
        raise _invalid("invalid_type", "Message must be a JSON object")
    return obj


def _check_contents(obj: _Json, limits: FrameLimits) -> None:
    """Unpaired surrogates (part of step 3), then steps 4–5: depth and string lengths."""
    if any(_SURROGATE.search(s) for s in _strings(obj)):
        raise _invalid("json_parse_error", "Invalid JSON: unpaired surrogate")
    if any(depth > limits.max_depth for depth, _ in _containers(obj)):
        raise _invalid("depth_limit_exceeded", f"Nesting depth exceeds {limits.max_depth}")
    if any(len(s) > limits.max_string_chars for s in _strings(obj)):
        limit = limits.max_string_chars
        raise _invalid("string_length_exceeded", f"String longer than {limit} characters")


def _check_size(text: str, max_bytes: int) -> None:
    # Counted in UTF-8 bytes, as on the wire. surrogatepass: an unpaired surrogate must be
    # measured (and refused later), not crash the encoder.
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise _invalid("size_limit_exceeded", f"Message size {size} bytes exceeds {max_bytes}")


def _parse_json(text: str) -> object:
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        # Hostile nesting ("[[[[…") overflows the parser before step 4 could measure it.
        raise _invalid("depth_limit_exceeded", "Nesting too deep to parse") from None
    except ValueError as exc:  # JSONDecodeError, refused constants, over-long integers
        raise _invalid("json_parse_error", f"Invalid JSON: {exc}") from None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _containers(root: _Json) -> Iterator[tuple[int, _Json | list[object]]]:
    """Every object and list with its depth (root = 1); iterative, so depth can't overflow."""
    stack: list[tuple[int, _Json | list[object]]] = [(1, root)]
    while stack:
        depth, node = stack.pop()
        yield depth, node
        children = node.values() if isinstance(node, dict) else node
        stack.extend((depth + 1, c) for c in children if isinstance(c, dict | list))


def _strings(root: _Json) -> Iterator[str]:
    """Every string value and every key."""
    for _, node in _containers(root):
        values: Iterable[object] = node
        if isinstance(node, dict):
            yield from node.keys()
            values = node.values()
        yield from (v for v in values if isinstance(v, str))


def _unwrap(outer: _Json, limits: FrameLimits) -> _Json:
    """Step 6: a ``message`` string holding a JSON object replaces the frame."""
    text = outer.get("message")
    if not isinstance(text, str):
        return outer
    try:
        inner = _parse_object(text, limits)
    except _Rejected as rejected:
        if rejected.sub_code in _NOT_WRAPPED:
            return outer
        raise
    _check_contents(inner, limits)
    return inner


# --- CSRF (step 8) ----------------------------------------------------------------------------

_MISSING: Final = object()


def _csrf_value(frame: _Json, outer: _Json) -> object:
    """The token that applies: the (inner) frame's own, else the outer frame's."""
    for source in (frame, outer):
        for key in _CSRF_KEYS:
            if key in source:
                return source[key]
    return _MISSING


def _check_csrf(token: object, accepted: Collection[str]) -> None:
    if token is _MISSING:
        raise _invalid("csrf_token_missing", "CSRF token missing")
    if not isinstance(token, str):
        raise _invalid("csrf_invalid_type", "CSRF token must be a string")
    if not any(_same_secret(token, good) for good in accepted):
        raise _invalid("csrf_token_invalid", "CSRF token invalid")


def _same_secret(a: str, b: str) -> bool:
    # Constant time: the token is a credential. compare_digest only takes ASCII str, hence bytes.
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# --- schema of `data` (step 9) ----------------------------------------------------------------


def _schema_error(field: str, expected: str) -> _Rejected:
    return _invalid("invalid_format", f"{field}: {expected}", field)


def _as_str(value: object, field: str) -> str:
    if not isinstance(value, str):  # no coercion: 5 is not "5"
        raise _schema_error(field, "expected a string")
    return value


def _required_str(data: _Json, key: str) -> str:
    if key not in data:
        raise _schema_error(f"data.{key}", "field required")
    return _as_str(data[key], f"data.{key}")


def _optional_str(data: _Json, key: str) -> str | None:
    value = data.get(key)
    return None if value is None else _as_str(value, f"data.{key}")


def _optional_bool(data: _Json, key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise _schema_error(f"data.{key}", "expected a boolean")
    return value


def _str_list(data: _Json, key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise _schema_error(f"data.{key}", "expected a list of strings")
    return tuple(_as_str(item, f"data.{key}[{i}]") for i, item in enumerate(value))


def _game_command(data: _Json) -> GameCommand:
    return GameCommand(_required_str(data, "command"), _str_list(data, "args"))


def _follow_response(data: _Json) -> FollowResponse:
    return FollowResponse(_required_str(data, "request_id"), _optional_bool(data, "accept"))


def _party_invite_response(data: _Json) -> PartyInviteResponse:
    return PartyInviteResponse(_required_str(data, "invite_id"), _optional_bool(data, "accept"))


def _client_error_report(data: _Json) -> ClientErrorReport:
    return ClientErrorReport(
        _optional_str(data, "error_type"), _optional_str(data, "message"), data.get("context")
    )


_BUILDERS: Final[Mapping[str, Callable[[_Json], ClientMessage]]] = {
    "command": _game_command,
    "game_command": _game_command,
    "chat": lambda data: Chat(_required_str(data, "message")),
    "ping": lambda data: Ping(),
    "follow_response": _follow_response,
    "party_invite_response": _party_invite_response,
    "refresh_token": lambda data: RefreshToken(_required_str(data, "token")),
    "client_error_report": _client_error_report,
}


def _build(frame: _Json) -> ClientMessage:
    message_type = frame["type"]
    builder = _BUILDERS.get(message_type) if isinstance(message_type, str) else None
    if builder is None:
        raise _Rejected(_unknown_type(message_type), "unknown_message_type")
    data = frame.get("data", {})
    if not isinstance(data, dict):
        raise _schema_error("data", "expected an object")
    return builder(data)


def _unknown_type(message_type: object) -> FrameError:
    shown = message_type if isinstance(message_type, str) else encode_json(message_type)
    return FrameError(
        "invalid_command",
        f"Unknown message type: {shown}",
        "That action is not supported.",
        {"error_type": "unknown_message_type"},
    )
