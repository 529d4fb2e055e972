"""The bundled web client in a real browser: Debian's headless Chromium driven by playwright,
against a real server process (docs/WEB_CLIENT.md).

Two players sign in through the page, walk, speak on every channel, answer a follow request and
a party invite through the page's prompts, and ride out a server restart. No raw JSON may ever
reach the log. Screenshots at desktop and phone width go to the test's tmp directory, and to
docs/screenshots/ when MYTHOS_RT_UPDATE_SCREENSHOTS=1 (scripts/update_screenshots).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    HOST,
    Launcher,
    ServerProcess,
    cli,
    next_event,
    read_burst,
    send_command,
    ws_connect,
)

playwright_sync = pytest.importorskip("playwright.sync_api")
Page = playwright_sync.Page
expect = playwright_sync.expect

PASSWORD = "the elder sign"
STEP_MS = 30_000  # one page reaction; generous for a loaded machine
RESTART_MS = 120_000  # a server restart and the page's backoff
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
RAW_JSON = re.compile(r'^\s*[\[{]\s*["{\[\]}]|"\w+"\s*:')  # {"a": …}, [{…}], [] …
OPPOSITE = {
    "north": "south", "south": "north", "east": "west", "west": "east",
    "northeast": "southwest", "southwest": "northeast",
    "northwest": "southeast", "southeast": "northwest", "up": "down", "down": "up",
}  # fmt: skip


class CuttableProxy:
    """A TCP forwarder to the game port that can drop every connection and refuse new ones:
    a network outage the browser cannot tell from a real one, while the server keeps the
    players' presences (and their missed events) through the disconnect grace."""

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        self.upstream_port = 0
        self.down = False
        self.connections = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.down:
                client.close()
                continue
            upstream = socket.create_connection((HOST, self.upstream_port))
            with self._lock:
                self._open += [client, upstream]
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):  # one side ended: end both, and free them
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        self.down = True
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


SCRIPT_PACE = ("--command-rate-limit", "100")


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "the browser test needs Debian's chromium: no `chromium` binary on PATH"
            " (scripts/test installs it with apt-get when run as root; otherwise"
            " `apt-get install chromium`)"
        )
    return found


@pytest.fixture
def browser(launcher: Launcher) -> Iterator[object]:
    executable = chromium_binary()
    expect.set_options(timeout=STEP_MS)
    # trio_asyncio (imported by the NATS code) turns new asyncio loops into trio-driven ones,
    # in which playwright's sync API cannot run: this thread gets a plain asyncio policy.
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with playwright_sync.sync_playwright() as driver:
            # --no-sandbox: Chromium refuses to start as root with its sandbox (CI runs as root).
            launched = driver.chromium.launch(
                executable_path=executable,
                headless=True,
                args=["--no-sandbox", "--disable-dev-shm-usage"],
            )
            try:
                yield launched
            finally:
                launched.close()
    finally:
        asyncio.set_event_loop_policy(None)


def open_page(browser: object, width: int, height: int, errors: list[str]) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
    page: Page = context.new_page()
    page.set_default_timeout(STEP_MS)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def sign_in(page: Page, server: ServerProcess, name: str) -> None:
    page.goto(f"{server.ops_url}/")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.dblclick("#login-button")  # a double click must not open two sockets
    expect(page.locator("#status")).to_have_attribute("data-state", "connected", timeout=STEP_MS)
    expect(page.locator("#room-name")).not_to_be_empty()


def type_line(page: Page, line: str) -> None:
    page.fill("#line", line)
    page.press("#line", "Enter")


def expect_line(page: Page, css: str, text: str, count: int = 1, timeout: int = STEP_MS) -> None:
    """Exactly ``count`` log lines of class ``css`` read ``text`` (eventually)."""
    lines = page.locator(f"#log .line.{css}").filter(has_text=re.compile(f"^{re.escape(text)}$"))
    expect(lines).to_have_count(count, timeout=timeout)


def log_lines(page: Page) -> list[str]:
    lines: list[str] = page.locator("#log .line").all_inner_texts()
    return lines


def walk(page: Page, direction: str) -> None:
    before = page.locator("#room-name").inner_text()
    page.click(f'#exits button[data-direction="{direction}"]')
    expect(page.locator("#room-name")).not_to_have_text(before)


def test_two_players_play_through_the_page_and_survive_a_restart(
    launcher: Launcher, browser: object, tmp_path: Path
) -> None:
    # A script types faster than a person: at 10 commands a second (the protocol's limit) a quick
    # browser gets "Too many commands" instead of the line the test waits for.
    server = launcher.start(*SCRIPT_PACE, players=())
    flags = ("--data-dir", str(server.data_dir), "--password", PASSWORD)
    cli("players", "add", "Lavinia", "--admin", *flags, cwd=server.data_dir)
    cli("players", "add", "Wilbur", *flags, cwd=server.data_dir)
    errors: list[str] = []
    lavinia = open_page(browser, 1280, 800, errors)
    wilbur = open_page(browser, 390, 844, errors)  # a phone
    sign_in(lavinia, server, "Lavinia")
    sign_in(wilbur, server, "Wilbur")
    for page in (lavinia, wilbur):
        expect_line(page, "kind-system", "You are in Arkham. Type help for the commands.")
    expect(lavinia.locator("#occupants li", has_text="Wilbur")).to_have_count(1)

    # Walk out by an exit button and back by a typed command; the other player sees both.
    direction = lavinia.locator("#exits button").first.get_attribute("data-direction")
    assert direction in OPPOSITE, direction
    start_room = lavinia.locator("#room-name").inner_text()
    walk(lavinia, direction)
    expect_line(lavinia, "kind-response", f"You go {direction}.")
    expect_line(wilbur, "kind-notice", "Lavinia leaves the room.")
    type_line(lavinia, f"go {OPPOSITE[direction]}")
    expect(lavinia.locator("#room-name")).to_have_text(start_room)
    expect_line(wilbur, "kind-notice", "Lavinia enters the room.")
    lavinia.press("#line", "ArrowUp")  # input history
    expect(lavinia.locator("#line")).to_have_value(f"go {OPPOSITE[direction]}")
    lavinia.fill("#line", "")

    # Every channel, each in its own colour class.
    for line, channel, heard in [
        ("say good evening", "say", "Lavinia says: good evening"),
        ("local the fog rolls in", "local", "Lavinia (local): the fog rolls in"),
        ("global to all of Arkham", "global", "Lavinia (global): to all of Arkham"),
        ("emote tips her hat", "emote", "Lavinia tips her hat"),
        ("pose leans on a lamp post", "pose", "Lavinia leans on a lamp post"),
        ("whisper Wilbur the key is under the mat", "whisper",
         "Lavinia whispers to you: the key is under the mat"),
        ("system the library closes at nine", "system", "[SYSTEM] the library closes at nine"),
    ]:  # fmt: skip
        type_line(lavinia, line)
        expect_line(lavinia, "kind-echo", f"> {line}")
        expect_line(wilbur, f"chan-{channel}", heard)

    # Text from players is text: markup arrives as the characters typed, never as elements.
    type_line(lavinia, "say <img src=x onerror=alert(1)><b>bold</b>")
    expect_line(wilbur, "chan-say", "Lavinia says: <img src=x onerror=alert(1)><b>bold</b>")
    expect(wilbur.locator("#log img, #log b")).to_have_count(0)

    # Scrolled back to read: new lines do not pull the view down; a button offers to.
    type_line(wilbur, "help")  # enough lines to scroll
    expect(wilbur.locator("#log .kind-response", has_text="Available commands:")).to_have_count(1)
    assert wilbur.locator("#log").evaluate("log => log.scrollHeight > log.clientHeight")
    wilbur.locator("#log").evaluate("log => { log.scrollTop = 0; }")
    # The page learns of the scroll from its scroll event, dispatched with the next frame.
    wilbur.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    type_line(lavinia, "say are you reading?")
    expect_line(wilbur, "chan-say", "Lavinia says: are you reading?")
    expect(wilbur.locator("#jump")).to_be_visible()
    assert wilbur.locator("#log").evaluate("log => log.scrollTop") == 0
    wilbur.click("#jump")
    expect(wilbur.locator("#jump")).to_be_hidden()

    # A follow request answered with the page's prompt; the follower walks after the leader.
    type_line(wilbur, "follow Lavinia")
    lavinia.click("#prompts .prompt button.accept")
    expect_line(wilbur, "kind-response", "You are now following Lavinia.")
    expect(wilbur.locator("#following")).to_have_text("You follow Lavinia.")
    walk(lavinia, direction)
    expect_line(wilbur, "kind-response", f"You follow Lavinia {direction}.")
    type_line(lavinia, f"go {OPPOSITE[direction]}")
    expect(wilbur.locator("#room-name")).to_have_text(start_room)

    # A party invite, the same way; then party chat.
    type_line(lavinia, "party invite Wilbur")
    wilbur.click("#prompts .prompt button.accept")
    expect_line(wilbur, "kind-response", "You have joined Lavinia's party.")
    for page in (lavinia, wilbur):
        expect(page.locator("#party li")).to_have_text(["Lavinia", "Wilbur"])
    type_line(lavinia, "party the lamps are lit")
    for page in (lavinia, wilbur):
        expect_line(page, "chan-party", "Lavinia (party): the lamps are lit")

    # A restart on the same ports: both pages reconnect by themselves and play on.
    server.stop()
    for page in (lavinia, wilbur):
        lost = page.locator("#log .line.kind-system", has_text="The connection was lost")
        expect(lost.first).to_be_visible()
    server = launcher.restart(server, *SCRIPT_PACE, same_ports=True)
    for page in (lavinia, wilbur):
        expect_line(
            page, "kind-system", "You are in Arkham. Type help for the commands.", 2, RESTART_MS
        )
        expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    expect(wilbur.locator("#occupants li", has_text="Lavinia")).to_have_count(1)
    type_line(lavinia, "say after the storm")
    expect_line(wilbur, "chan-say", "Lavinia says: after the storm")
    expect_line(wilbur, "chan-say", "Lavinia says: good evening")  # still once: nothing doubled

    for page in (lavinia, wilbur):
        raw = [line for line in log_lines(page) if RAW_JSON.search(line)]
        assert raw == [], raw
    assert errors == []
    lavinia.screenshot(path=str(tmp_path / "desktop.png"))
    wilbur.screenshot(path=str(tmp_path / "phone.png"))
    if os.environ.get("MYTHOS_RT_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(exist_ok=True)
        for name in ("desktop.png", "phone.png"):
            shutil.copyfile(tmp_path / name, DOCS_SCREENSHOTS / name)


def test_a_dropped_connection_resumes_with_what_was_missed_once(
    launcher: Launcher, browser: object
) -> None:
    """Through PUBLIC_URL (a proxy in front of the game port): the pages renew their short-lived
    tokens; the proxy drops both pages' sockets; Carter speaks while they are away; both pages
    resume (with the renewed tokens) and show it exactly once, and play on."""
    proxy = CuttableProxy()
    try:
        public_url = f"http://{HOST}:{proxy.port}"
        # Tokens of 125 s: the page renews them 120 s before expiry, that is at once (5 s).
        server = launcher.start(
            "--public-url", public_url, "--login-token-ttl-s", "125", players=("Carter",)
        )
        proxy.upstream_port = server.ws_port
        flags = ("--data-dir", str(server.data_dir), "--password", PASSWORD)
        cli("players", "add", "Lavinia", "Wilbur", *flags, cwd=server.data_dir)
        errors: list[str] = []
        pages = [open_page(browser, 1280, 800, errors) for _ in range(2)]
        for page, name in zip(pages, ("Lavinia", "Wilbur"), strict=True):
            sign_in(page, server, name)
        assert proxy.connections >= 4  # two logins and two sockets, all through PUBLIC_URL
        for page in pages:
            renewed = page.locator("#log .line.kind-notice", has_text="Sign-in renewed until")
            expect(renewed.first).to_be_visible()

        proxy.cut()
        for page in pages:
            lost = page.locator("#log .line.kind-system", has_text="The connection was lost")
            expect(lost).to_have_count(1)

        async def carter_speaks() -> None:
            token = server.token("Carter")
            async with ws_connect(server.url(token=token)) as ws:
                await read_burst(ws)
                await send_command(ws, token, "say", "while you were away")
                await next_event(ws, "command_response")

        # In a thread of its own: playwright's sync API keeps an event loop on this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, carter_speaks()).result(timeout=RESTART_MS / 1000)
        proxy.down = False
        for page in pages:
            resumed = page.locator(
                "#log .line.kind-system",
                has_text=re.compile(r"^Reconnected\. \d+ missed messages? caught up\.$"),
            )
            expect(resumed).to_have_count(1, timeout=RESTART_MS)
            expect_line(page, "chan-say", "Carter says: while you were away")
            expect_line(page, "kind-system", "You are in Arkham. Type help for the commands.")
            raw = [line for line in log_lines(page) if RAW_JSON.search(line)]
            assert raw == [], raw
        type_line(pages[1], "say back again")  # frames carry the renewed token as CSRF
        expect_line(pages[0], "chan-say", "Wilbur says: back again")
        assert errors == []
    finally:
        proxy.close()


def event(event_type: str, seq: int, **data: object) -> str:
    return json.dumps(
        {"event_type": event_type, "timestamp": "2026-11-25T19:33:22Z", "sequence_number": seq,
         "data": data}
    )  # fmt: skip


# Frames a server could send, and a line each must produce in the log (None: panels only).
SCRIPTED: list[tuple[str, str | None]] = [
    (event("game_state", 10, player={"name": "Lavinia"},
           room={"name": "Quad", "description": "Elms.", "exits": {"north": "x"}},
           occupants=["Lavinia", "Wilbur (linkdead)", "Dyer (warded)"],
           login_grace_period_active=True, login_grace_period_remaining=9.5, following=None),
     "A protective ward surrounds you for 10 seconds."),
    (event("welcome", 11, message="Connected to MythosMUD", resumed=False),
     "You are in Arkham. Type help for the commands."),
    (event("player_entered_game", 12, player_id="p", player_name="Upton"),
     "Upton has entered the game."),
    (event("player_entered", 13, player_id="p", player_name="Upton",
           message="Upton enters the room."), "Upton enters the room."),
    (event("player_left", 14, player_id="p", player_name="Upton"), "Upton leaves the room."),
    (event("player_left_game", 15, player_id="p", player_name="Upton"),
     "Upton has left the game."),
    (event("room_occupants", 16, occupants=["Lavinia", "Wilbur (linkdead)"]), None),
    (event("chat_message", 17, channel="say", message="Wilbur says: once"), "Wilbur says: once"),
    (event("chat_message", 17, channel="say", message="Wilbur says: once"), None),  # again
    (event("chat_message", 9, channel="say", message="Wilbur says: stale"), None),  # older
    (event("follow_request", 18, request_id="req-1", requestor_name="Wilbur", requestor_id="p"),
     "Wilbur asks to follow you (see Requests, or type accept / decline)."),
    (event("party_invite", 19, invite_id="inv-1", inviter_name="Dyer", inviter_id="p"),
     "Dyer invites you to their party (see Requests, or type accept / decline)."),
    (event("party_update", 20, party_id="x", leader="Dyer", members=["Dyer", "Lavinia"],
           change="joined"), "The party: Dyer, Lavinia (led by Dyer)."),
    (event("follow_state", 21, following={"target_name": "Dyer", "target_type": "player"}),
     None),
    (event("command_response", 22, result="You say: hello"), "You say: hello"),
    (event("game_tick", 23, tick_number=1, mythos_clock="10:00", daypart="morning"), None),
    (event("pong", 24), None),
    # The page then asks for a new token, which the server refuses for this made-up one.
    (event("token_expiring", 25, expires_at="2026-11-25T19:33:22Z"), "Your sign-in runs out at"),
    (event("token_refreshed", 26, expires_at="2026-11-25T19:33:22Z"), "Sign-in renewed until"),
    (event("shutdown_notification", 27, message="The server will be shutting down in 30 seconds",
           seconds_remaining=30, channel="system"),
     "The server will be shutting down in 30 seconds"),
    (event("shutdown_cancelled", 28), "The server shutdown was cancelled."),
    (event("intentional_disconnect", 29, message="You have rested and disconnected."),
     "You have rested and disconnected."),
    (event("eldritch_sign", 30, glyph="yellow", nested={"a": [1, 2]}),
     "(eldritch sign) glyph: yellow"),
    (json.dumps({"type": "error", "error_type": "invalid_format",
                 "message": "Message validation failed: data.args",
                 "user_friendly": "Invalid format provided",
                 "details": {"error_type": "invalid_format"}}),
     "Invalid format provided (Message validation failed: data.args)"),
    (event("party_update", 31, party_id="x", leader="Dyer", members=["Dyer"], change="kicked"),
     "The party is now Dyer."),
]  # fmt: skip


def test_every_event_reads_as_text_against_a_scripted_socket(
    launcher: Launcher, browser: object
) -> None:
    """The page's rendering of each event type, duplicates and stale frames, and the frames its
    prompts send, against a WebSocket scripted by the test (playwright's route_web_socket)."""
    server = launcher.start(players=())  # serves the page; the game socket is the script's
    errors: list[str] = []
    page = open_page(browser, 1280, 800, errors)
    sent: list[dict[str, object]] = []

    def script(ws: object) -> None:
        ws.on_message(lambda message: sent.append(json.loads(message)))  # type: ignore[attr-defined]
        for frame, _ in SCRIPTED:
            ws.send(frame)  # type: ignore[attr-defined]

    page.route_web_socket(re.compile(r".*/v1/api/ws.*"), script)
    page.goto(f"{server.ops_url}/")
    page.click("#token-login summary")
    page.fill("#token", "scripted.token.here")
    page.click("#connect")
    expect(page.locator("#log .line", has_text="The party is now Dyer.")).to_have_count(1)

    lines = log_lines(page)
    for _, text in SCRIPTED:
        if text is not None:
            assert [line for line in lines if line.startswith(text)], (text, lines)
    assert [line for line in lines if RAW_JSON.search(line)] == []
    assert lines.count("Wilbur says: once") == 1 and "Wilbur says: stale" not in lines
    expect(page.locator("#occupants li[data-mark=linkdead]")).to_have_text("Wilburlinkdead")
    expect(page.locator("#following")).to_have_text("You follow Dyer.")
    expect(page.locator("#clock")).to_have_text("10:00, morning")
    refused = page.locator("#log .line.kind-error", has_text="Could not renew the sign-in")
    expect(refused).to_have_count(1)
    expect(page.locator("#party")).to_have_text("You travel alone.")  # she was the one kicked

    page.locator("#prompts .prompt", has_text="Wilbur").locator("button.accept").click()
    page.locator("#prompts .prompt", has_text="Dyer").locator("button.decline").click()
    expect(page.locator("#prompts .prompt button:disabled")).to_have_count(4)
    answers = [json.loads(str(frame["message"])) for frame in sent if "message" in frame]
    assert [(a["type"], a["data"]) for a in answers] == [
        ("follow_response", {"request_id": "req-1", "accept": True}),
        ("party_invite_response", {"invite_id": "inv-1", "accept": False}),
    ]
    assert all(frame["csrfToken"] == "scripted.token.here" for frame in sent)
    assert errors == []
