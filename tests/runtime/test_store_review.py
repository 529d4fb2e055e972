"""Regressions from the storage review: races between the store writer, the gate and the hub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from mythos_rt.core.commands.channels import GLOBALLY_MUTED
from tests.runtime.harness import Client, Harness, running
from tests.runtime.test_social_runtime import connect_all, result


def hold_after_mute_load(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> tuple[trio.Event, trio.Event]:
    """Handshakes stop right after reading the player's mutes, until ``release`` is set."""
    writer = h.app.store_writer
    original = writer.read_after_writes
    loaded, release = trio.Event(), trio.Event()

    async def held(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        value = await original(fn, *args, **kwargs)
        if getattr(fn, "__name__", "") == "load_mutes":
            loaded.set()
            await release.wait()
        return value

    monkeypatch.setattr(writer, "read_after_writes", held)
    return loaded, release


async def connect_held(h: Harness, name: str, release: trio.Event) -> Client:
    """Connect ``name`` while the handshake is held; returns once it is admitted."""
    clients: list[Client] = []

    async def connect() -> None:
        clients.append(await h.connect(name))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connect)
        await release.wait()
    return clients[0]


@pytest.mark.parametrize("other_socket", [False, True])
async def test_a_mute_committed_between_the_mute_load_and_admission_is_not_lost(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    other_socket: bool,
) -> None:
    """An admin globally mutes Wilmarth while Wilmarth's handshake is between reading its mutes
    and being admitted.  The admin was told the mute is in force, so Wilmarth must not speak.
    (With ``other_socket``, Wilmarth's previous presence lives until just before admission.)"""
    async with running(tmp_path, grace_s=0.0) as h:
        (armitage,) = await connect_all(h, "Armitage")
        old = await h.connect("Wilmarth") if other_socket else None
        loaded, release = hold_after_mute_load(h, monkeypatch)
        async with trio.open_nursery() as nursery:

            async def mute_then_release() -> None:
                await loaded.wait()
                await armitage.command("mute_global", "Wilmarth")
                await result(armitage, "You have globally muted Wilmarth permanently.")
                if old is not None:
                    await old.ws.aclose()  # the old presence ends before the new one starts
                    await trio.testing.wait_all_tasks_blocked()
                    assert h.app.hub.presences.get(h.players["Wilmarth"].player_id) is None
                release.set()

            nursery.start_soon(mute_then_release)
            wilmarth = await connect_held(h, "Wilmarth", release)
        await wilmarth.command("say", "can you hear me")
        frames = await wilmarth.until_pong()
        replies = [f["data"]["result"] for f in frames if f.get("event_type") == "command_response"]
        assert replies == [GLOBALLY_MUTED]
