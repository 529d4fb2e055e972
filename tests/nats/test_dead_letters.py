"""The dead-letter file: one JSON line per refused message, truncated, capped, rate-limited log."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mythos_rt.runtime.dead_letters import DeadLetters
from mythos_rt.runtime.metrics import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


def test_a_letter_keeps_subject_reason_and_a_truncated_payload(tmp_path: Path) -> None:
    metrics = Metrics()
    letters = DeadLetters(
        tmp_path / "dead.jsonl", metrics, payload_max_bytes=8, wall_clock=lambda: 1_796_000_000.0
    )
    letters.record("chat.say.room.r1", "payload is not UTF-8", b"\xff\xfeabcdefghij")
    letters.record("chat.global", "missing content", b"{}")
    letters.close()
    first, second = lines(tmp_path / "dead.jsonl")
    assert first == {
        "time": "2026-11-30T00:53:20+00:00",
        "subject": "chat.say.room.r1",
        "reason": "payload is not UTF-8",
        "payload": "\\xff\\xfeabcdef",
        "payload_bytes": 12,
        "truncated": True,
    }
    assert (second["payload"], second["truncated"]) == ("{}", False)
    assert metrics.value("nats_invalid_messages") == 2


def test_the_file_rotates_at_the_cap_keeping_one_older_file(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    letters = DeadLetters(path, Metrics(), max_bytes=2000)
    for index in range(100):
        letters.record("chat.global", f"reason {index}", b"x" * 100)
    letters.close()
    older = path.with_name("dead.jsonl.1")
    assert path.stat().st_size <= 2000 and older.stat().st_size <= 2000
    assert lines(path)[-1]["reason"] == "reason 99"
    assert lines(older)[-1]["reason"] == f"reason {99 - len(lines(path))}"


def test_an_existing_file_over_the_cap_rotates_on_first_write(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_bytes(b"{}\n" * 1000)
    letters = DeadLetters(path, Metrics(), max_bytes=1000)
    letters.record("chat.global", "late", b"{}")
    letters.close()
    assert [letter["reason"] for letter in lines(path)] == ["late"]
    assert path.with_name("dead.jsonl.1").stat().st_size == 3000


def test_the_log_line_is_rate_limited(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    letters = DeadLetters(None, Metrics(), log_every_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="mythos_rt.runtime.dead_letters"):
        for _ in range(5):
            letters.record("chat.global", "bad", b"{}")
        clock.now += 10.0
        letters.record("chat.system", "worse", b"{}")
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("refused 1 invalid bus message(s); latest on chat.global: bad")
    assert messages[1].startswith("refused 5 invalid bus message(s); latest on chat.system: worse")


def test_a_write_failure_is_counted_never_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    metrics = Metrics()
    letters = DeadLetters(blocker / "dead.jsonl", metrics)
    letters.record("chat.global", "bad", b"{}")
    assert metrics.value("nats_invalid_messages") == 1
    assert metrics.value("nats_dead_letter_write_errors") == 1
