"""Operator log lines (docs/OPERATIONS.md "Logs"): one INFO line per login, logout, disconnect,
refusal and admin action, with structured fields; client text can never forge a line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from mythos_rt.runtime.gate import handle_stream
from mythos_rt.runtime.logs import (
    MAX_FIELD_CHARS,
    REFUSAL_LINES,
    REFUSAL_WINDOW_S,
    REPORT_LINES,
    JsonFormatter,
    TextFormatter,
    escape,
    log_admin_action,
    log_event,
)
from mythos_rt.runtime.server import drain
from tests.runtime.harness import running, upgrade_request
from tests.runtime.test_http_api import exchange, get
from tests.runtime.test_review_regressions import PausingStream, RawClient

FORGED = (
    "boom\n2026-11-29 12:00:00,000 ERROR mythos_rt.runtime.hub: forged\r\n"
    'Traceback (most recent call last):\u2028  File "x"\x1b[31m'
)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The structured fields of every captured event line called ``name``."""
    return [
        record.fields  # type: ignore[attr-defined]
        for record in caplog.records
        if getattr(record, "event", None) == name and record.levelno == logging.INFO
    ]


def only(caplog: pytest.LogCaptureFixture, name: str) -> dict[str, Any]:
    found = events(caplog, name)
    assert len(found) == 1, f"expected one {name!r} line, got {found}"
    return found[0]


# --- the lines, from a running app -------------------------------------------------------------


async def test_login_and_client_disconnect_lines(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path, instance_id="alpha") as h:
        client = await h.connect("Wilmarth", query="&session_id=s-1")
        login = only(caplog, "login")
        player_id = h.players["Wilmarth"].player_id
        assert login["player"] == "Wilmarth" and login["player_id"] == player_id
        assert login["session"] == "s-1" and login["instance"] == "alpha"
        assert login["peer"] and login["resumed"] is False
        await client.ws.aclose(1000, "bye now")
        await trio.testing.wait_all_tasks_blocked()
        line = only(caplog, "disconnect")
        assert (line["player"], line["code"], line["reason"], line["by"]) == (
            "Wilmarth",
            1000,
            "bye now",
            "client",
        )
        assert h.app.metrics.value("socket_closes", code="1000") == 1


async def test_logout_line_and_the_server_initiated_disconnect(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path) as h:
        client = await h.connect("Dyer")
        await client.command("logout")
        assert await client.closed() == (1000, "Goodbye")
        await trio.testing.wait_all_tasks_blocked()
        logout = only(caplog, "logout")
        assert (logout["player"], logout["code"], logout["reason"]) == ("Dyer", 1000, "Goodbye")
        line = only(caplog, "disconnect")
        assert (line["code"], line["by"]) == (1000, "server")


async def test_a_refused_handshake_is_one_line_without_the_token(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path) as h:
        status, _, _ = await h.raw_handshake("/v1/api/ws?token=not.a.jwt")
        assert status == 401
        line = only(caplog, "handshake_refused")
        assert line["status"] == 401 and line["close_code"] is None
        assert line["path"] == "/v1/api/ws" and line["reason"] and line["peer"]
        assert "not.a.jwt" not in caplog.text

        # A browser (Origin present) hears a close code instead: the line names it.
        stream = h.open_stream()
        await stream.send_all(upgrade_request("/v1/api/ws", [("Origin", "http://localhost")]))
        await trio.testing.wait_all_tasks_blocked()
        browser = events(caplog, "handshake_refused")[-1]
        assert (browser["status"], browser["close_code"]) == (401, 4401)


async def test_a_refused_api_request_is_one_line(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path) as h:
        assert (await exchange(h, get("/v1/nope?secret=x")))[0] == 404
        line = only(caplog, "api_refused")
        assert (line["status"], line["method"], line["path"]) == (404, "GET", "/v1/nope")
        assert line["reason"] == "Not Found" and line["peer"]
        assert h.app.metrics.value("http_api_responses", status="404") == 1


async def test_a_client_error_report_cannot_forge_log_lines(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path) as h:
        client = await h.connect("Armitage")
        report = {"error_type": "render\nERROR forged", "message": FORGED * 50}
        await client.send({"type": "client_error_report", "data": report})
        await client.until_pong()
        [record] = [r for r in caplog.records if getattr(r, "event", None) == "client_error_report"]
    for formatter in (TextFormatter(), JsonFormatter()):
        [line] = formatter.format(record).splitlines()  # one line, whatever the client sent
        assert "\x1b" not in line and "\u2028" not in line
        assert len(line) < len(FORGED) * 10  # truncated: not the 50 copies sent
    text = TextFormatter().format(record)
    assert " INFO mythos_rt.runtime.connection: client_error_report " in text
    assert "\\nERROR" in text and "\\x1b" in text and "\\u2028" in text
    entry = json.loads(JsonFormatter().format(record))
    assert entry["event"] == "client_error_report" and entry["level"] == "INFO"
    assert entry["error_type"] == "render\nERROR forged"  # JSON escapes it: still one line
    assert entry["message"].startswith("client_error_report player_id=")


# --- the formatters and helpers ----------------------------------------------------------------


def make_record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("mythos_rt.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_the_text_formatter_keeps_any_message_on_one_line() -> None:
    # Not only event lines: a message built with %s from client text is made safe too.
    line = TextFormatter().format(make_record("name %s refused", FORGED))
    assert len(line.splitlines()) == 1
    assert "refused" in line and "\\r\\n" in line


def test_the_json_formatter_writes_one_valid_object_per_line() -> None:
    try:
        raise RuntimeError("inner\nline")
    except RuntimeError:
        record = make_record("failed: %s", FORGED)
        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    assert len(text.splitlines()) == 1
    entry = json.loads(text)
    assert set(entry) == {"time", "level", "logger", "message", "exc_info"}
    assert entry["time"].endswith("Z") and entry["level"] == "INFO"
    assert entry["logger"] == "mythos_rt.test" and entry["message"] == f"failed: {FORGED}"
    assert "Traceback" in entry["exc_info"] and "RuntimeError: inner\nline" in entry["exc_info"]


def test_escape_is_unambiguous_and_bounded() -> None:
    assert escape("a\\nb\nc") == "a\\\\nb\\nc"  # a typed backslash-n is not a newline
    assert escape("\x00\x7f\x85\u2029") == "\\x00\\x7f\\x85\\u2029"
    assert escape("Ærnst ünïcode") == "Ærnst ünïcode"
    long = escape("x" * 1000)
    assert long.startswith("x" * MAX_FIELD_CHARS) and long.endswith("…(+800 chars)")


def test_fields_with_spaces_or_quotes_are_quoted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log_event(logging.getLogger("mythos_rt.test"), "x", a="two words", b='say "hi"', c=None)
    assert caplog.records[-1].getMessage() == 'x a="two words" b="say \\"hi\\"" c=None'


def test_admin_actions_have_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log_admin_action("Armitage", "kick", "Dyer", "spamming\nthe say channel")
    [record] = caplog.records
    assert record.name == "mythos_rt.admin" and record.levelno == logging.INFO
    assert record.getMessage() == (
        'admin_action actor=Armitage action=kick target=Dyer detail="spamming\\nthe say channel"'
    )
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["detail"] == "spamming\nthe say channel"  # raw for JSON, which escapes it


def test_a_field_named_like_a_core_key_does_not_replace_it() -> None:
    record = make_record("x", event="x", fields={"message": "mine", "level": "low", "n": 1})
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["message"], entry["level"]) == ("x", "INFO")
    assert (entry["field_message"], entry["field_level"], entry["n"]) == ("mine", "low", 1)


async def test_a_flood_of_refusals_is_logged_within_a_budget(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path) as h:
        for _ in range(REFUSAL_LINES + 20):
            assert (await h.raw_handshake("/v1/api/ws?token=x"))[0] == 401
        assert len(events(caplog, "handshake_refused")) == REFUSAL_LINES
        await trio.sleep(REFUSAL_WINDOW_S)
        assert (await h.raw_handshake("/v1/api/ws?token=x"))[0] == 401
        assert events(caplog, "handshake_refused")[-1]["suppressed"] == 20
        assert h.app.metrics.value("handshakes_refused", status="401") == REFUSAL_LINES + 21


async def test_error_reports_are_logged_within_a_budget_per_socket(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path) as h:
        client = await h.connect("Armitage")
        for i in range(REPORT_LINES + 5):
            await client.send({"type": "client_error_report", "data": {"message": str(i)}})
        await client.until_pong()
        assert len(events(caplog, "client_error_report")) == REPORT_LINES
        other = await h.connect("Dyer")  # another socket has its own budget
        await other.send({"type": "client_error_report", "data": {"message": "mine"}})
        await other.until_pong()
        assert events(caplog, "client_error_report")[-1]["error_message"] == "mine"


async def test_a_socket_refused_after_its_upgrade_is_logged_with_its_close_code(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path) as h:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        paused = PausingStream(server_stream)
        h.nursery.start_soon(handle_stream, h.app.gate, paused)
        client = RawClient(client_stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.upgrade, f"/v1/api/ws?token={h.token('Dyer')}")
            await paused.writing.wait()  # authenticated; the 101 is on its way out
            nursery.start_soon(drain, h.app)
            await trio.testing.wait_all_tasks_blocked()
            paused.release.set()
        await trio.testing.wait_all_tasks_blocked()
        line = only(caplog, "handshake_refused")
        assert (line["status"], line["close_code"]) == (None, 1001)
        assert line["player_id"] == h.players["Dyer"].player_id
        assert events(caplog, "login") == []


LOG_A_FAILURE = """
import logging
from mythos_rt.runtime.logs import configure_logging, log_event
configure_logging("INFO", {fmt!r})
log = logging.getLogger("mythos_rt.test")
log_event(log, "login", player="Carter")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("request from %s failed", "a\\nforged")
"""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_lines_written_by_the_log_thread_arrive_whole_before_exit(fmt: str) -> None:
    # The event loop only queues records; a thread writes them, and exit flushes it.
    code = LOG_A_FAILURE.format(fmt=fmt)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stderr.splitlines()
    if fmt == "json":
        login, failure = map(json.loads, lines)
        assert (login["event"], login["player"]) == ("login", "Carter")
        assert failure["message"] == "request from a\nforged failed"
        assert failure["exc_info"].endswith("ZeroDivisionError: division by zero")
        return
    assert lines[0].endswith(" INFO mythos_rt.test: login player=Carter")
    assert lines[1].endswith(" ERROR mythos_rt.test: request from a\\nforged failed")
    assert lines[2] == "Traceback (most recent call last):"  # the traceback keeps its lines
    assert lines[-1] == "ZeroDivisionError: division by zero"
