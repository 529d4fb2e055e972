"""The benchmark's baselines (scripts/bench/servers/common.py) answer like mythos_rt on the paths
the benchmark measures, and its report (scripts/bench/report.py) derives the capacity the issue
asks for; both are pure and load by path (scripts/ is not a package)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import jwt
import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench"
SECRET = "test-secret-0123456789abcdef0123456789abcdef"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def common() -> ModuleType:
    return _load("bench_common", BENCH / "servers" / "common.py")


@pytest.fixture(scope="module")
def report() -> ModuleType:
    return _load("bench_report", BENCH / "report.py")


def token(sub: str, **overrides: object) -> str:
    claims = {"sub": sub, "aud": "fastapi-users:auth", "exp": int(time.time()) + 60, **overrides}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_admission_needs_a_valid_token_and_takes_the_room_from_the_query(
    common: ModuleType,
) -> None:
    admitted = common.admit(f"/v1/api/ws?token={token('Ada')}&room=hall", SECRET)
    assert (admitted.name, admitted.room) == ("Ada", "hall")
    assert common.admit(f"/api/ws?token={token('Ada')}", SECRET).room == common.START_ROOM
    expired = token("Ada", exp=int(time.time()) - 1)
    wrong_audience = token("Ada", aud="someone-else")
    forged = jwt.encode({"sub": "Ada", "aud": "fastapi-users:auth", "exp": 2**40}, "x" * 40)
    for bad in (expired, wrong_audience, forged, "", "not-a-jwt"):
        assert common.admit(f"/v1/api/ws?token={bad}", SECRET) is None
    assert common.admit(f"/elsewhere?token={token('Ada')}", SECRET) is None


def test_connect_burst_is_mythos_rts_order_with_the_room_list(common: ModuleType) -> None:
    frames = [
        json.loads(text)
        for text in common.connect_burst(common.Encoder(), "Ada", "hall", ["Ada", "Bo"])
    ]
    assert [f["event_type"] for f in frames] == [
        "game_state",
        "room_update",
        "room_occupants",
        "welcome",
    ]
    assert frames[2]["data"]["occupants"] == ["Ada", "Bo"]
    numbers = [f["sequence_number"] for f in frames]
    assert numbers == sorted(set(numbers))


def test_say_is_encoded_once_for_the_room_and_echoed_to_the_speaker(common: ModuleType) -> None:
    inner = {"type": "game_command", "data": {"command": "say", "args": ["hello", "there"]}}
    wrapped = json.dumps({"message": json.dumps(inner), "csrfToken": "t"})
    outcome = common.handle_frame(common.Encoder(), "Ada", "hall", wrapped)
    chat = json.loads(outcome.to_room)
    assert chat["event_type"] == "chat_message" and chat["room_id"] == "hall"
    assert chat["data"]["message"] == "Ada says: hello there"
    assert json.loads(outcome.to_sender[0])["data"]["result"] == "You say: hello there"


def test_ping_gets_a_pong_and_nonsense_an_error_frame(common: ModuleType) -> None:
    enc = common.Encoder()
    pong = common.handle_frame(enc, "Ada", "hall", '{"type":"ping","csrfToken":"t"}')
    assert [json.loads(t)["event_type"] for t in pong.to_sender] == [
        "pong"
    ] and pong.to_room is None
    for junk in ("{", "[]", '{"type":"dance"}'):
        assert (
            json.loads(common.handle_frame(enc, "Ada", "hall", junk).to_sender[0])["type"]
            == "error"
        )


def test_rooms_know_who_is_where(common: ModuleType) -> None:
    rooms = common.Rooms()
    a, b, c = object(), object(), object()
    rooms.join("hall", a, "Ada")
    rooms.join("hall", b, "Bo")
    rooms.join("yard", c, "Cy")
    assert rooms.others("hall", a) == [b] and rooms.names("hall") == ["Ada", "Bo"]
    rooms.leave("hall", b)
    assert rooms.names("hall") == ["Ada"] and rooms.others("hall", a) == []


def step(server: str, rep: int, rate: float, p99: float, delivered: int = 10) -> dict[str, object]:
    return {
        "server": server,
        "rep": rep,
        "listeners": 1000,
        "deliveries_per_s": rate,
        "p99_ms": p99,
        "delivered": delivered,
        "expected": 10,
    }


def test_capacity_is_the_highest_rate_all_delivered_within_200_ms_median_of_reps(
    report: ModuleType,
) -> None:
    rows = [
        step("a", 1, 2_000, 30),
        step("a", 1, 10_000, 150),
        step("a", 1, 20_000, 250),
        step("a", 2, 2_000, 30),
        step("a", 2, 10_000, 120, delivered=9),
        step("a", 3, 2_000, 30),
        step("a", 3, 10_000, 190),
        step("a", 3, 20_000, 199),
        step("b", 1, 2_000, 500),
    ]
    assert report.best_rate(rows, "a", 1000) == 10_000  # reps: 10k, 2k, 20k
    assert report.best_rate(rows, "b", 1000) == 0
    assert report.best_rate(rows, "c", 1000) is None
