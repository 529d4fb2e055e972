"""Server frames as a telnet player reads them: lines, colours, GMCP payloads."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from mythos_rt.core.protocol import encode_event, rate_limit_error
from mythos_rt.core.telnet_render import (
    COLOURS,
    Style,
    close_notice,
    gmcp_messages,
    parse_envelope,
    render,
    room_number,
    split_text_frames,
)
from mythos_rt.runtime.wsio import text_frame

PLAIN = Style(colour=False)
ROOM = {
    "id": "quad",
    "name": "Miskatonic Quadrangle",
    "description": "Elms lean over the lawns.",
    "zone": "arkham",
    "subzone": "miskatonic_university",
    "exits": {"north": "library", "south": "square"},
    "occupants": ["Lavinia", "Wilbur (warded)"],
}


def frame(event_type: str, data: Mapping[str, object]) -> dict[str, object]:
    return json.loads(encode_event(event_type, data, sequence_number=1, timestamp=0.0))  # type: ignore[no-any-return]


def test_frames_split_back_whatever_their_size() -> None:
    texts = ["a", "b" * 200, "c" * 70_000, "ÿ"]
    assert split_text_frames(b"".join(text_frame(t) for t in texts)) == texts


@pytest.mark.parametrize(
    ("event_type", "data", "lines"),
    [
        ("command_response", {"result": "You go north."}, ["You go north."]),
        ("command_response", {"result": "Line 1\nLine 2"}, ["Line 1", "Line 2"]),
        ("command_response", {"result": ""}, []),
        (
            "chat_message",
            {"channel": "say", "message": "Wilbur says: hi", "player_name": "Wilbur"},
            ["Wilbur says: hi"],
        ),
        ("player_entered", {"message": "Wilbur enters the room."}, ["Wilbur enters the room."]),
        ("player_left_game", {"player_name": "Wilbur"}, ["Wilbur has left the game."]),
        (
            "follow_request",
            {"requestor_name": "Wilbur", "request_id": "x"},
            ["Wilbur asks to follow you. (Answer with 'accept' or 'decline'.)"],
        ),
        (
            "party_update",
            {"leader": "Lavinia", "members": ["Lavinia", "Wilbur"], "change": "joined"},
            ["Party (leader Lavinia): Lavinia, Wilbur"],
        ),
        ("party_update", {"change": "disbanded", "members": []}, []),
        (
            "shutdown_notification",
            {"message": "The server will be shutting down in 10 seconds"},
            ["The server will be shutting down in 10 seconds"],
        ),
        ("room_occupants", {"players": ["Lavinia"]}, []),
        ("game_tick", {"tick_number": 3}, []),
        ("something_new", {"message": "A new kind of event."}, ["A new kind of event."]),
        ("something_new", {"count": 3}, []),
    ],
)
def test_render_events(event_type: str, data: dict[str, object], lines: list[str]) -> None:
    assert render(frame(event_type, data), PLAIN) == lines


def test_a_room_view_leaves_the_player_out_and_wraps_to_the_window() -> None:
    style = Style(colour=False, width=20, me="Lavinia")
    lines = render(frame("room_state", {"room": ROOM}), style)
    assert lines == [
        "Miskatonic Quadrangle",
        "Elms lean over the",
        "lawns.",
        "Here: Wilbur (warded)",
        "Exits: north, south",
    ]


def test_channels_have_their_own_colours() -> None:
    said = render(frame("chat_message", {"channel": "say", "message": "a"}), Style())
    shouted = render(frame("chat_message", {"channel": "global", "message": "a"}), Style())
    assert said == [f"\x1b[{COLOURS['say']}ma\x1b[0m"]
    assert shouted == [f"\x1b[{COLOURS['global']}ma\x1b[0m"]
    assert COLOURS["say"] != COLOURS["global"] != COLOURS["whisper"] != COLOURS["party"]


def test_error_frames_show_their_friendly_text() -> None:
    error = parse_envelope(rate_limit_error(3.0, 100).to_json("p1"))
    assert render(error, PLAIN) == [
        "You are sending messages too quickly. Please wait 3 seconds and try again."
    ]


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"event_type": 5, "data": []}'])
def test_malformed_frames_render_nothing(text: str) -> None:
    assert render(parse_envelope(text), PLAIN) == []
    assert gmcp_messages(parse_envelope(text)) == []


def test_gmcp_room_info_vitals_and_channel_text() -> None:
    stats = {"current_dp": 90, "max_dp": 100, "lucidity": 80, "max_lucidity": 100}
    state = {"player": {"stats": {**stats, "magic_points": 10, "max_magic_points": 10}}}
    messages = dict(gmcp_messages(frame("game_state", {**state, "room": ROOM})))
    assert messages["Char.Vitals"] == {
        "dp": 90,
        "maxdp": 100,
        "lucidity": 80,
        "maxlucidity": 100,
        "mp": 10,
        "maxmp": 10,
        "position": None,
    }
    assert messages["Room.Info"] == {
        "num": room_number("quad"),
        "id": "quad",
        "name": "Miskatonic Quadrangle",
        "area": "Arkham",
        "zone": "arkham",
        "subzone": "miskatonic_university",
        "exits": {"north": room_number("library"), "south": room_number("square")},
        "exit_ids": {"north": "library", "south": "square"},
    }
    chat = {"channel": "say", "player_name": "Wilbur", "message": "Wilbur says: hi"}
    assert gmcp_messages(frame("chat_message", chat)) == [
        ("Comm.Channel.Text", {"channel": "say", "talker": "Wilbur", "text": "Wilbur says: hi"})
    ]


def test_room_numbers_are_stable() -> None:
    assert room_number("earth_arkhamcity_campus_quad") == 1807643037


def test_close_notices() -> None:
    assert close_notice(1000, "Goodbye", PLAIN) == []  # the quit reply said goodbye
    assert close_notice(1001, "Server shutting down", PLAIN) == ["*** Server shutting down ***"]
