"""Broker outages: connected goes False, publishes wait in a bounded buffer, the bridge reconnects
and resubscribes by itself, and exit stays bounded with the broker dead."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.nats.conftest import NatsServer, free_port
from tests.nats.helpers import (
    WAIT_S,
    bridge,
    content_of,
    plain_client,
    receive,
    say,
    wait_until,
)


async def in_msgs(server: NatsServer) -> int:
    varz = await trio.to_thread.run_sync(server.varz)
    return int(varz["in_msgs"])


async def wait_for_in_msgs(server: NatsServer, count: int) -> None:
    """Poll the broker's counter until it reaches ``count`` (bounded), then check it is exact."""
    with trio.move_on_after(WAIT_S):
        while True:
            if await in_msgs(server) >= count:
                break
            await trio.sleep(0.05)
    assert await in_msgs(server) == count


async def test_broker_restart_reconnects_resubscribes_and_delivers_what_was_buffered(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with (
        bridge(nats_server.url, "alpha", tmp_path) as (alpha, alpha_metrics),
        bridge(nats_server.url, "beta", tmp_path) as (beta, beta_metrics),
    ):
        nats_server.kill()
        await wait_until(lambda: not alpha.connected and not beta.connected, "both disconnected")

        # Published during the outage: handed to nats-py's pending buffer, none dropped.
        for index in range(20):
            alpha.publish(*say(f"buffered {index}"))
        await wait_until(lambda: alpha_metrics.value("nats_published") == 20, "handed over")
        assert alpha_metrics.value("nats_outbound_dropped") == 0

        await trio.to_thread.run_sync(nats_server.start)  # same port
        await wait_until(lambda: alpha.connected and beta.connected, "both reconnected")
        # The new broker received exactly the buffered messages.  (Whether beta sees them
        # depends on who resubscribed first: core NATS is at-most-once.)
        await wait_for_in_msgs(nats_server, 20)

        # Messages flow again both ways once beta's subscriptions are back.
        with trio.fail_after(WAIT_S):
            while True:
                alpha.publish(*say("probe"))
                with trio.move_on_after(0.5):
                    while content_of(await beta.inbound.receive()) != "probe":
                        pass
                    break
        beta.publish(*say("beta is back"))
        while content_of(got := await receive(alpha)) != "beta is back":
            pass
        assert got.origin == "beta"
        for metrics in (alpha_metrics, beta_metrics):
            assert metrics.value("nats_disconnects") >= 1
            assert metrics.value("nats_reconnects") >= 1


async def test_an_outage_longer_than_the_buffer_drops_and_counts(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with bridge(nats_server.url, "alpha", tmp_path, pending_bytes=4096) as (alpha, metrics):
        nats_server.kill()
        await wait_until(lambda: not alpha.connected, "disconnected")
        for index in range(100):
            alpha.publish(*say(f"m{index}"))
        await wait_until(
            lambda: metrics.value("nats_published") + metrics.value("nats_outbound_dropped") == 100,
            "every publish handed over or dropped",
        )
        kept = metrics.value("nats_published")
        assert 0 < kept < 100
        await trio.to_thread.run_sync(nats_server.start)
        await wait_until(lambda: alpha.connected, "reconnected")
        await wait_for_in_msgs(nats_server, kept)


async def test_exit_is_bounded_with_the_broker_dead(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with trio.fail_after(WAIT_S):
        async with bridge(nats_server.url, "alpha", tmp_path, drain_timeout_s=1.0) as (alpha, _):
            nats_server.kill()
            await wait_until(lambda: not alpha.connected, "disconnected")
            for index in range(100):
                alpha.publish(*say(f"m{index}"))
    assert not alpha.connected


async def test_cancellation_is_bounded_with_the_broker_dead(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with trio.fail_after(WAIT_S), trio.CancelScope() as scope:
        async with bridge(nats_server.url, "alpha", tmp_path, drain_timeout_s=1.0) as (alpha, _):
            nats_server.kill()
            await wait_until(lambda: not alpha.connected, "disconnected")
            alpha.publish(*say("lost"))
            scope.cancel()
            await trio.sleep_forever()


async def test_exit_is_bounded_with_the_broker_hung(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with trio.fail_after(WAIT_S):
        async with bridge(nats_server.url, "alpha", tmp_path, drain_timeout_s=1.0) as (alpha, _):
            nats_server.pause()
            for index in range(100):
                alpha.publish(*say(f"m{index}"))
    nats_server.resume()


async def test_cancelling_a_connect_that_keeps_failing_is_prompt_and_quiet(
    tmp_path: Path,
) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with trio.fail_after(WAIT_S), trio.move_on_after(0.5) as scope:
        async with bridge(url, "alpha", tmp_path, connect_timeout_s=60.0):
            pytest.fail("connected to nothing")
    assert scope.cancelled_caught


async def test_a_normal_exit_hands_over_and_drains_what_was_queued(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with plain_client(nats_server.url) as listener:
        received = await listener.subscribe("chat.>")
        async with bridge(nats_server.url, "alpha", tmp_path) as (alpha, _):
            for index in range(500):
                alpha.publish(*say(f"m{index}"))
        # The bus is closed; everything queued reached the broker before it did.
        with trio.fail_after(WAIT_S):
            for _ in range(500):
                await received.receive()


async def test_a_restart_in_one_step_is_survived(nats_server: NatsServer, tmp_path: Path) -> None:
    async with bridge(nats_server.url, "alpha", tmp_path) as (alpha, metrics):
        await trio.to_thread.run_sync(nats_server.restart)
        await wait_until(lambda: metrics.value("nats_reconnects") == 1, "reconnected")
        assert alpha.connected
