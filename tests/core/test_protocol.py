"""Wire protocol: the validation pipeline of PROTOCOL.md section 7 and the frames of section 4."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from mythos_rt.core.protocol import (
    Chat,
    ClientErrorReport,
    ClientMessage,
    FollowResponse,
    FrameError,
    FrameLimits,
    GameCommand,
    PartyInviteResponse,
    Ping,
    RefreshToken,
    decode_client_frame,
    encode_event,
    encode_json,
    format_timestamp,
    rate_limit_error,
)

TOKEN = "tok-123"
LIMITS = FrameLimits()


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def bare(message_type: object = "ping", data: object = None, **extra: object) -> dict[str, object]:
    frame: dict[str, object] = {"type": message_type, "csrfToken": TOKEN, **extra}
    if data is not None:
        frame["data"] = data
    return frame


def wrapped(inner: dict[str, object], **outer: object) -> str:
    """The web client's form: the inner frame as a JSON string under ``message``."""
    return dumps({"message": dumps(inner), "timestamp": 1795635202000, **outer})


def decode(raw: str | bytes | dict[str, object], csrf: bool = True) -> ClientMessage | FrameError:
    text = dumps(raw) if isinstance(raw, dict) else raw
    return decode_client_frame(text, LIMITS, frozenset({TOKEN}) if csrf else None)


def sub_code(result: ClientMessage | FrameError) -> str:
    assert isinstance(result, FrameError), result
    assert result.error_type == "invalid_format"
    assert result.message.startswith("Message validation failed: ")
    assert result.user_friendly == "Invalid format provided"
    code = result.details["error_type"]
    assert isinstance(code, str)
    return code


def sized_frame(total_bytes: int, fill: str) -> str:
    """A valid ping frame of exactly ``total_bytes`` UTF-8 bytes, padded with ``fill``.

    The padding is split over two strings so no single string passes the 10,000-char limit.
    """
    head, mid, tail = f'{{"type":"ping","csrfToken":"{TOKEN}","p1":"', '","p2":"', '"}'
    budget = total_bytes - len((head + mid + tail).encode())
    count, rest = divmod(budget, len(fill.encode()))
    pad = fill * count + "a" * rest
    text = head + pad[: len(pad) // 2] + mid + pad[len(pad) // 2 :] + tail
    assert len(text.encode()) == total_bytes
    return text


def nested(levels: int, kind: str) -> str:
    """JSON text of ``levels`` nested containers: ``[[]]`` is 2 levels."""
    if kind == "list":
        return "[" * levels + "]" * levels
    if kind == "dict":
        return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)
    return '[{"a":' * (levels // 2) + ("[]" if levels % 2 else "1") + "}]" * (levels // 2)


def with_depth(depth: int, kind: str) -> str:
    """A ping frame whose total depth is ``depth`` (the root object is depth 1)."""
    return f'{{"type":"ping","csrfToken":"{TOKEN}","d":{nested(depth - 1, kind)}}}'


# --- step 2: size -----------------------------------------------------------------------------


@pytest.mark.parametrize("fill", ["a", "é", "€", "😀"])
@pytest.mark.parametrize(("size", "ok"), [(10240, True), (10241, False)])
def test_size_is_counted_in_utf8_bytes(fill: str, size: int, ok: bool) -> None:
    result = decode(sized_frame(size, fill))
    if ok:
        assert result == Ping()
    else:
        assert sub_code(result) == "size_limit_exceeded"


def test_multibyte_frame_under_the_limit_in_chars_is_refused_in_bytes() -> None:
    text = sized_frame(12000, "€")
    assert len(text) < 10240
    assert sub_code(decode(text)) == "size_limit_exceeded"


def test_wrapped_frame_size_counts_the_whole_outer_text() -> None:
    inner = bare("command", {"command": "say", "args": ["€" * 4000]})
    assert sub_code(decode(wrapped(inner, csrfToken=TOKEN))) == "size_limit_exceeded"


# --- step 3: JSON and root type ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "not json",
        '{"type":"ping",}',
        "{'type':'ping'}",
        '{"type":"ping","x":NaN}',
        '{"type":"ping","x":Infinity}',
        '{"type":"ping","x":-Infinity}',
        '{"type":"ping","x":1e999}',
        '{"type":"ping","x":"\\ud800"}',
        '{"type":"ping","\\udfff":1}',
        '{"type":"ping","x":' + "9" * 5000 + "}",
    ],
)
def test_json_parse_error(text: str) -> None:
    assert sub_code(decode(text)) == "json_parse_error"


@pytest.mark.parametrize(
    "raw", ["[]", '[{"type":"ping"}]', '"ping"', "5", "null", "true", b'{"type":"ping"}', b""]
)
def test_invalid_type(raw: str | bytes) -> None:
    assert sub_code(decode(raw)) == "invalid_type"


def test_surrogate_pairs_are_fine() -> None:
    text = f'{{"type":"chat","csrfToken":"{TOKEN}","data":{{"message":"\\ud83d\\ude00"}}}}'
    assert decode(text) == Chat("😀")


# --- step 4: depth ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "dict", "mixed"])
@pytest.mark.parametrize(("depth", "ok"), [(1, True), (2, True), (10, True), (11, False)])
def test_depth_limit(kind: str, depth: int, ok: bool) -> None:
    text = with_depth(depth, kind) if depth > 1 else bare()
    result = decode(text)
    if ok:
        assert result == Ping()
    else:
        assert sub_code(result) == "depth_limit_exceeded"


def test_depth_examples() -> None:
    small = FrameLimits(max_depth=1)
    assert decode_client_frame('{"type":"ping"}', small, None) == Ping()
    for text in ['{"type":"ping","a":{}}', '{"type":"ping","a":[]}', '{"type":"ping","a":[1]}']:
        assert sub_code(decode_client_frame(text, small, None)) == "depth_limit_exceeded"


@pytest.mark.parametrize("levels", [900, 5000])
def test_pathological_nesting_never_escapes(levels: int) -> None:
    # 5000 is past the interpreter's recursion limit: the parser itself gives up.
    assert sub_code(decode('{"a":' + nested(levels, "list") + "}")) == "depth_limit_exceeded"


# --- step 5: string lengths -------------------------------------------------------------------


@pytest.mark.parametrize(("length", "ok"), [(10000, True), (10001, False)])
@pytest.mark.parametrize(
    "frame",
    [
        lambda s: bare(pad=s),
        lambda s: bare(**{s: 1}),
        lambda s: bare(pad=["x", s]),
        lambda s: bare(pad={"deep": {s: "x"}}),
        lambda s: bare("chat", {"message": s}),
    ],
    ids=["value", "key", "list item", "nested key", "chat message"],
)
def test_string_length_limit(
    frame: Callable[[str], dict[str, object]], length: int, ok: bool
) -> None:
    result = decode(frame("x" * length))
    if ok:
        assert not isinstance(result, FrameError)
    else:
        assert sub_code(result) == "string_length_exceeded"


def test_string_length_counts_chars_not_bytes() -> None:
    assert decode(bare("chat", {"message": "é" * 5000})) == Chat("é" * 5000)


# --- step 6: wrapping -------------------------------------------------------------------------


def test_wrapped_inner_frame_is_depth_checked_on_its_own() -> None:
    inner = json.loads(with_depth(11, "list"))
    assert sub_code(decode(wrapped(inner))) == "depth_limit_exceeded"
    assert decode(wrapped(json.loads(with_depth(10, "dict")))) == Ping()


def test_wrapped_inner_pathological_nesting() -> None:
    text = dumps({"message": '{"a":' + nested(4900, "list") + "}", "csrfToken": TOKEN})
    assert sub_code(decode(text)) == "depth_limit_exceeded"


@pytest.mark.parametrize(
    "inner",
    [bare(pad="x" * 10001), bare(**{"k" * 10001: 1})],
    ids=["value", "key"],
)
def test_wrapped_inner_string_length(inner: dict[str, object]) -> None:
    # The outer `message` string always contains the inner string, so whichever level notices
    # first, the sub-code is the same.
    assert sub_code(decode(wrapped(inner))) == "string_length_exceeded"


@pytest.mark.parametrize(
    "frame",
    [
        bare(message="hello"),
        bare(message="[1, 2]"),
        bare(message="5"),
        bare(message='{"type":'),
        bare(message=""),
        bare(message={"type": "chat"}),
        bare(message=None),
    ],
)
def test_message_that_is_not_a_json_object_does_not_wrap(frame: dict[str, object]) -> None:
    assert decode(frame) == Ping()


def test_inner_frame_replaces_outer_fields() -> None:
    outer_type_ignored = dumps({"type": "ping", "message": dumps(bare("chat", {"message": "hi"}))})
    assert decode(outer_type_ignored) == Chat("hi")


def test_unwrapping_happens_once() -> None:
    twice = dumps({"message": wrapped(bare("chat", {"message": "hi"})), "csrfToken": TOKEN})
    assert sub_code(decode(twice)) == "missing_required_field"


# --- step 7: type present ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"csrfToken": TOKEN},
        {"csrfToken": TOKEN, "data": {"command": "look"}},
        wrapped({"data": {"command": "look"}}, csrfToken=TOKEN),
    ],
)
def test_missing_type(raw: str | dict[str, object]) -> None:
    result = decode(raw)
    assert sub_code(result) == "missing_required_field"
    assert isinstance(result, FrameError)
    assert result.details["field"] == "type"


# --- step 8: CSRF -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "ping"}, "csrf_token_missing"),
        ({"type": "ping", "csrfToken": 5}, "csrf_invalid_type"),
        ({"type": "ping", "csrfToken": None}, "csrf_invalid_type"),
        ({"type": "ping", "csrfToken": [TOKEN]}, "csrf_invalid_type"),
        ({"type": "ping", "csrf_token": True}, "csrf_invalid_type"),
        ({"type": "ping", "csrfToken": "wrong"}, "csrf_token_invalid"),
        ({"type": "ping", "csrfToken": ""}, "csrf_token_invalid"),
        ({"type": "ping", "csrfToken": TOKEN + "x"}, "csrf_token_invalid"),
        ({"type": "ping", "csrfToken": "tök"}, "csrf_token_invalid"),
        ({"type": "ping", "csrf_token": "wrong"}, "csrf_token_invalid"),
        ({"type": "ping", "csrfToken": TOKEN}, None),
        ({"type": "ping", "csrf_token": TOKEN}, None),
        # Unknown types are looked up only after the token: nothing leaks to a forged frame.
        ({"type": "foo"}, "csrf_token_missing"),
        ({"type": "command", "data": {"command": 5}}, "csrf_token_missing"),
    ],
)
def test_csrf(frame: dict[str, object], expected: str | None) -> None:
    result = decode(frame)
    if expected is None:
        assert result == Ping()
    else:
        assert sub_code(result) == expected


def test_csrf_not_required() -> None:
    assert decode({"type": "ping"}, csrf=False) == Ping()
    assert decode({"type": "ping", "csrfToken": 5}, csrf=False) == Ping()


def test_csrf_accepts_any_current_token() -> None:
    tokens = ["old-token", "refreshed-token"]
    for token in tokens:
        assert decode_client_frame(dumps(bare(csrfToken=token)), LIMITS, tokens) == Ping()
    assert sub_code(decode_client_frame(dumps(bare()), LIMITS, [])) == "csrf_token_invalid"


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        (TOKEN, None, None),  # the outer token applies when the inner has none
        (None, TOKEN, None),
        ("wrong", TOKEN, None),  # the inner token overrides the outer one
        (TOKEN, "wrong", "csrf_token_invalid"),
        (TOKEN, 5, "csrf_invalid_type"),
        (5, None, "csrf_invalid_type"),
        ("wrong", None, "csrf_token_invalid"),
        (None, None, "csrf_token_missing"),
    ],
)
def test_inner_and_outer_csrf(outer: object, inner: object, expected: str | None) -> None:
    inner_frame: dict[str, object] = {"type": "ping"}
    if inner is not None:
        inner_frame["csrfToken"] = inner
    outer_fields = {} if outer is None else {"csrfToken": outer}
    result = decode(wrapped(inner_frame, **outer_fields))
    if expected is None:
        assert result == Ping()
    else:
        assert sub_code(result) == expected


# --- step 9: every message type, bare and wrapped ---------------------------------------------

MESSAGES: list[tuple[str, object, ClientMessage]] = [
    ("command", {"command": "say", "args": ["Hi", "there"]}, GameCommand("say", ("Hi", "there"))),
    ("game_command", {"command": "say", "args": ["Hello"]}, GameCommand("say", ("Hello",))),
    ("game_command", {"command": "look"}, GameCommand("look")),
    ("command", {"command": " /Look ", "args": []}, GameCommand(" /Look ")),
    ("command", {"command": "look", "args": ["x"], "extra": 1}, GameCommand("look", ("x",))),
    ("chat", {"message": "hi there"}, Chat("hi there")),
    ("chat", {"message": ""}, Chat("")),
    ("ping", None, Ping()),
    ("ping", {}, Ping()),
    ("ping", {"anything": [1, 2]}, Ping()),
    ("follow_response", {"request_id": "r1", "accept": True}, FollowResponse("r1", True)),
    ("follow_response", {"request_id": "r1"}, FollowResponse("r1", False)),
    ("party_invite_response", {"invite_id": "i1", "accept": True}, PartyInviteResponse("i1", True)),
    ("party_invite_response", {"invite_id": "i1"}, PartyInviteResponse("i1")),
    ("refresh_token", {"token": "new.jwt.token"}, RefreshToken("new.jwt.token")),
    ("client_error_report", None, ClientErrorReport()),
    (
        "client_error_report",
        {"error_type": "render", "message": "boom", "context": {"line": 3, "stack": ["a"]}},
        ClientErrorReport("render", "boom", {"line": 3, "stack": ["a"]}),
    ),
    ("client_error_report", {"error_type": None, "context": 5}, ClientErrorReport(context=5)),
]


@pytest.mark.parametrize("form", ["bare", "wrapped"])
@pytest.mark.parametrize(("message_type", "data", "expected"), MESSAGES)
def test_every_message_type(
    form: str, message_type: str, data: object, expected: ClientMessage
) -> None:
    frame = bare(message_type, data)
    raw: str | dict[str, object] = wrapped(frame) if form == "wrapped" else frame
    assert decode(raw) == expected


@pytest.mark.parametrize(
    ("message_type", "data", "field"),
    [
        ("command", {"command": "say", "args": ["Hello", 5]}, "data.args[1]"),
        ("command", {"command": "say", "args": ["a", "b", None]}, "data.args[2]"),
        ("command", {"command": "say", "args": "Hello"}, "data.args"),
        ("command", {"command": "say", "args": {"0": "Hello"}}, "data.args"),
        ("command", {"args": ["x"]}, "data.command"),
        ("command", None, "data.command"),
        ("command", {"command": 5}, "data.command"),
        ("command", {"command": True}, "data.command"),
        ("command", {"command": None}, "data.command"),
        ("command", {"command": ["look"]}, "data.command"),
        ("game_command", "look", "data"),
        ("ping", [], "data"),
        ("ping", 0, "data"),
        ("chat", {}, "data.message"),
        ("chat", {"message": 5}, "data.message"),
        ("follow_response", {"request_id": "r", "accept": "yes"}, "data.accept"),
        ("follow_response", {"request_id": "r", "accept": 1}, "data.accept"),
        ("follow_response", {"request_id": "r", "accept": None}, "data.accept"),
        ("follow_response", {"accept": True}, "data.request_id"),
        ("follow_response", {"request_id": 7}, "data.request_id"),
        ("party_invite_response", {"invite_id": "i", "accept": 0}, "data.accept"),
        ("party_invite_response", {}, "data.invite_id"),
        ("refresh_token", {}, "data.token"),
        ("refresh_token", {"token": {"jwt": "x"}}, "data.token"),
        ("client_error_report", {"error_type": 5}, "data.error_type"),
        ("client_error_report", {"message": ["x"]}, "data.message"),
    ],
)
def test_schema_errors_name_the_field(message_type: str, data: object, field: str) -> None:
    result = decode(bare(message_type, data))
    assert sub_code(result) == "invalid_format"
    assert isinstance(result, FrameError)
    assert result.details == {"error_type": "invalid_format", "field": field}
    assert result.message.startswith(f"Message validation failed: {field}: ")


def test_data_null_is_not_an_object() -> None:
    frame = dumps({"type": "ping", "csrfToken": TOKEN, "data": None})
    result = decode(frame)
    assert sub_code(result) == "invalid_format"
    assert isinstance(result, FrameError)
    assert result.details["field"] == "data"


# --- unknown types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_type", "shown"),
    [("foo", "foo"), ("", ""), ("PING", "PING"), (5, "5"), (None, "null"), (["ping"], '["ping"]')],
)
@pytest.mark.parametrize("form", ["bare", "wrapped"])
def test_unknown_type(form: str, message_type: object, shown: str) -> None:
    frame = bare(message_type, {"data": "ignored"})
    result = decode(wrapped(frame) if form == "wrapped" else frame)
    assert isinstance(result, FrameError)
    assert result.error_type == "invalid_command"
    assert result.message == f"Unknown message type: {shown}"


def test_unknown_type_wins_over_bad_data() -> None:
    result = decode(bare("foo", 5))
    assert isinstance(result, FrameError)
    assert result.error_type == "invalid_command"


# --- error frames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("player_id", "expected"),
    [
        (
            "p-1",
            '{"type":"error","error_type":"invalid_format",'
            '"message":"Message validation failed: x","user_friendly":"Invalid format provided",'
            '"details":{"player_id":"p-1","error_type":"json_parse_error"}}',
        ),
        (
            None,
            '{"type":"error","error_type":"invalid_format",'
            '"message":"Message validation failed: x","user_friendly":"Invalid format provided",'
            '"details":{"error_type":"json_parse_error"}}',
        ),
    ],
)
def test_error_frame_exact_json(player_id: str | None, expected: str) -> None:
    error = FrameError(
        "invalid_format",
        "Message validation failed: x",
        "Invalid format provided",
        {"error_type": "json_parse_error"},
    )
    assert error.to_json(player_id) == expected


def test_error_frame_from_the_pipeline() -> None:
    result = decode(sized_frame(10241, "a"))
    assert isinstance(result, FrameError)
    assert result.to_json("p-1") == (
        '{"type":"error","error_type":"invalid_format",'
        '"message":"Message validation failed: Message size 10241 bytes exceeds 10240",'
        '"user_friendly":"Invalid format provided",'
        '"details":{"player_id":"p-1","error_type":"size_limit_exceeded"}}'
    )


def test_error_frame_player_id_overrides_and_defaults() -> None:
    assert FrameError("internal_error", "m", "u").to_json(None).endswith('"details":{}}')
    error = FrameError("internal_error", "m", "u", {"player_id": "stale", "k": 1})
    assert json.loads(error.to_json("p-2"))["details"] == {"player_id": "p-2", "k": 1}


@pytest.mark.parametrize(
    ("retry_after_s", "limit", "seconds"),
    [
        (0.0, 100, 1),
        (0.2, 100, 1),
        (1.0, 100, 1),
        (1.01, 100, 2),
        (3.0000000001, 100, 3),
        (59.4, 100, 60),
        (12.5, 20, 13),
        (float("inf"), 0, 3600),
    ],
)
def test_rate_limit_error(retry_after_s: float, limit: int, seconds: int) -> None:
    error = rate_limit_error(retry_after_s, limit)
    assert error.error_type == "rate_limit_exceeded"
    assert error.message == (
        f"Message rate limit exceeded. Limit: {limit} messages per minute. "
        f"Try again in {seconds} seconds."
    )
    assert error.details == {"error_type": "rate_limit_exceeded", "retry_after": seconds}
    assert str(seconds) in error.user_friendly


# --- events -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch_s", "expected"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (59.9999999, "1970-01-01T00:00:59Z"),
        (1795635202.9, "2026-11-25T19:33:22Z"),
        (1_000_000_000, "2001-09-09T01:46:40Z"),
    ],
)
def test_format_timestamp(epoch_s: float, expected: str) -> None:
    assert format_timestamp(epoch_s) == expected


TS = 1795635202.5
STAMP = '"timestamp":"2026-11-25T19:33:22Z"'


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {},
            '{"event_type":"pong",' + STAMP + ',"sequence_number":7,"data":{}}',
        ),
        (
            {"room_id": "r1"},
            '{"event_type":"pong",' + STAMP + ',"sequence_number":7,"data":{},"room_id":"r1"}',
        ),
        (
            {"player_id": "p1"},
            '{"event_type":"pong",' + STAMP + ',"sequence_number":7,"data":{},"player_id":"p1"}',
        ),
        (
            {"room_id": "r1", "player_id": "p1"},
            '{"event_type":"pong",' + STAMP + ',"sequence_number":7,"data":{},'
            '"room_id":"r1","player_id":"p1"}',
        ),
        (
            {"room_id": None, "player_id": None},
            '{"event_type":"pong",' + STAMP + ',"sequence_number":7,"data":{}}',
        ),
    ],
)
def test_encode_event_envelope(kwargs: dict[str, str | None], expected: str) -> None:
    assert encode_event("pong", {}, sequence_number=7, timestamp=TS, **kwargs) == expected


def test_encode_event_data_is_compact_and_utf8() -> None:
    data = {"message": "Ïä! «Cthulhu» fhtagn", "count": 2, "names": ["Armitage", "Wilmarth"]}
    frame = encode_event(
        "chat_message", data, sequence_number=1795635202000123, timestamp=TS, player_id="p"
    )
    assert frame == (
        '{"event_type":"chat_message",' + STAMP + ',"sequence_number":1795635202000123,'
        '"data":{"message":"Ïä! «Cthulhu» fhtagn","count":2,"names":["Armitage","Wilmarth"]},'
        '"player_id":"p"}'
    )


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"a": [1, 2], "b": None}, '{"a":[1,2],"b":null}'),
        ({"é": "€"}, '{"é":"€"}'),
        ([], "[]"),
        ("x", '"x"'),
    ],
)
def test_encode_json(obj: object, expected: str) -> None:
    assert encode_json(obj) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_encode_json_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValueError):
        encode_json({"x": value})
