"""The NATS bridge against a real nats-server: exchange, origin, validation, batching, overflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from mythos_rt.core import bus_messages as bm
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.nats_bridge import INSTANCE_HEADER, NatsConnectError, open_nats_bus, redact
from tests.nats.conftest import NatsServer, free_port
from tests.nats.helpers import (
    bridge,
    content_of,
    nothing_queued,
    plain_client,
    receive,
    say,
    wait_until,
)


async def test_two_instances_exchange_and_never_receive_their_own(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with (
        bridge(nats_server.url, "alpha", tmp_path) as (alpha, alpha_metrics),
        bridge(nats_server.url, "beta", tmp_path) as (beta, _),
    ):
        assert alpha.connected and beta.connected
        alpha.publish(*say("from alpha"))
        got = await receive(beta)
        assert (content_of(got), got.origin, got.subject) == (
            "from alpha",
            "alpha",
            "chat.say.room.r1",
        )
        beta.publish(*say("from beta"))
        got = await receive(alpha)
        assert (content_of(got), got.origin) == ("from beta", "beta")
        # alpha's first message was its peer's, and nothing else is waiting for it.
        assert nothing_queued(alpha) and nothing_queued(beta)
        assert alpha_metrics.value("nats_published") == 1
        assert alpha_metrics.value("nats_received") == 1


async def test_a_message_carrying_our_own_header_is_dropped(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with (
        bridge(nats_server.url, "alpha", tmp_path) as (alpha, metrics),
        plain_client(nats_server.url) as outsider,
    ):
        await outsider.publish(*say("echo of alpha"), headers={INSTANCE_HEADER: "alpha"})
        await outsider.publish(*say("from gamma"), headers={INSTANCE_HEADER: "gamma"})
        got = await receive(alpha)
        assert (content_of(got), got.origin) == ("from gamma", "gamma")
        assert metrics.value("nats_inbound_own") == 1
        assert nothing_queued(alpha)


async def test_an_outside_npc_message_arrives_without_origin_and_renders(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    payload = {
        "message_id": "0b5f4c6e-2a53-4a43-9a0e-2f3f7b0a9c11",
        "timestamp": "2026-11-29T08:00:00Z",
        "channel": "say",
        "content": "Braaains",
        "sender_id": "npc-zombie-1",
        "sender_name": "Zombie",
        "room_id": "earth_arkhamcity_campus_quad",
        "speaker_kind": "npc",
    }
    async with (
        bridge(nats_server.url, "alpha", tmp_path) as (alpha, _),
        plain_client(nats_server.url) as npc_service,
    ):
        subject = bm.say_subject("earth_arkhamcity_campus_quad")
        await npc_service.publish(subject, json.dumps(payload).encode())
        got = await receive(alpha)
    assert got.origin is None
    message = bm.decode_chat(got.subject, got.payload)
    assert message.payload.speaker_kind == "npc"
    assert bm.render_chat(message.payload) == "Zombie says: Braaains"


INVALID = [
    ("extra key", "chat.say.room.r1", {"extra": 1}, "unknown keys ['extra']"),
    ("bad timestamp", "chat.say.room.r1", {"timestamp": "2026-11-29T08:00:00+02:00"}, "timestamp"),
    ("channel mismatch", "chat.global", {}, "channel say on a global subject"),
    ("oversized content", "chat.say.room.r1", {"content": "x" * 10_001}, "content must be"),
]


async def test_invalid_messages_become_dead_letters_and_are_never_delivered(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    _, valid = say("valid")
    base = json.loads(valid)
    async with (
        bridge(nats_server.url, "alpha", tmp_path) as (alpha, metrics),
        plain_client(nats_server.url) as outsider,
    ):
        for _, subject, change, _ in INVALID:
            await outsider.publish(subject, json.dumps(base | change).encode())
        await outsider.publish("chat.say.room.r1", b"\xff\xfe not UTF-8")
        await outsider.publish(*say("sentinel"))
        got = await receive(alpha)
        assert content_of(got) == "sentinel"
        assert nothing_queued(alpha)
        assert metrics.value("nats_invalid_messages") == len(INVALID) + 1
    letters = [
        json.loads(line)
        for line in (tmp_path / "dead-alpha.jsonl").read_text(encoding="ascii").splitlines()
    ]
    assert len(letters) == len(INVALID) + 1
    for letter, (_, subject, _, reason) in zip(letters, INVALID, strict=False):
        assert letter["subject"] == subject and letter["reason"].startswith(reason)
    oversized = letters[3]
    assert oversized["truncated"] and len(oversized["payload"]) == 4096
    assert oversized["payload_bytes"] > 10_001
    assert letters[4]["reason"] == "payload is not UTF-8"
    assert letters[4]["payload"].startswith("\\xff\\xfe")


async def test_publishes_are_batched_into_few_crossings(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    count = 1000
    async with (
        bridge(nats_server.url, "alpha", tmp_path) as (alpha, metrics),
        bridge(nats_server.url, "beta", tmp_path) as (beta, _),
    ):
        for index in range(count):
            alpha.publish(*say(f"m{index}"))
        received = [content_of(await receive(beta)) for _ in range(count)]
        assert received == [f"m{index}" for index in range(count)]
        assert metrics.value("nats_published") == count
        # Everything was queued before the publisher ran: one crossing per MAX_BATCH (1024).
        assert metrics.value("nats_publish_batches") == 1


async def test_a_full_outbound_queue_drops_the_newest(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with (
        bridge(nats_server.url, "alpha", tmp_path, outbound_max=100) as (alpha, metrics),
        bridge(nats_server.url, "beta", tmp_path) as (beta, _),
    ):
        for index in range(250):
            alpha.publish(*say(f"m{index}"))
        # 100 queued, plus one handed straight to the publisher if it was already waiting.
        accepted = 250 - metrics.value("nats_outbound_dropped")
        assert accepted in (100, 101)
        received = [content_of(await receive(beta)) for _ in range(accepted)]
        assert received == [f"m{index}" for index in range(accepted)]
        alpha.publish(*say("after"))
        assert content_of(await receive(beta)) == "after"


async def test_a_full_inbound_queue_drops_the_newest(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with (
        bridge(nats_server.url, "alpha", tmp_path, inbound_max=10) as (alpha, metrics),
        plain_client(nats_server.url) as outsider,
    ):
        for index in range(50):
            await outsider.publish(*say(f"m{index}"))
        await outsider.flush()
        await wait_until(
            lambda: metrics.value("nats_received") + metrics.value("nats_inbound_dropped") == 50,
            "every message received or dropped",
        )
        assert metrics.value("nats_inbound_dropped") == 40
        kept = [content_of(alpha.inbound.receive_nowait()) for _ in range(10)]
        assert kept == [f"m{index}" for index in range(10)]
        assert nothing_queued(alpha)


async def test_inbound_ends_when_the_bus_closes(nats_server: NatsServer, tmp_path: Path) -> None:
    async with bridge(nats_server.url, "alpha", tmp_path) as (alpha, _):
        pass
    with pytest.raises(trio.EndOfChannel):
        await alpha.inbound.receive()
    alpha.publish(*say("too late"))  # counted, never raised


async def test_no_broker_at_start_is_one_clear_error(tmp_path: Path) -> None:
    url = f"nats://user:secret@127.0.0.1:{free_port()}"
    with trio.fail_after(15), pytest.raises(NatsConnectError) as caught:
        async with open_nats_bus(url, "alpha", ["chat.>"], Metrics(), connect_timeout_s=1.0):
            pytest.fail("connected to nothing")
    message = str(caught.value)
    assert message.startswith(f"cannot connect to NATS at nats://127.0.0.1:{url.rsplit(':', 1)[1]}")
    assert "secret" not in message and "\n" not in message


async def test_a_publish_the_broker_would_refuse_is_dropped_alone(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with (
        bridge(nats_server.url, "alpha", tmp_path) as (alpha, metrics),
        bridge(nats_server.url, "beta", tmp_path) as (beta, _),
    ):
        _, payload = say("nowhere")
        alpha.publish("chat.say.room.two words", payload)
        alpha.publish(*say("still flowing"))
        assert content_of(await receive(beta)) == "still flowing"
        assert metrics.value("nats_outbound_dropped") == 1
        assert metrics.value("nats_published") == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://user:pw@broker:4222", "nats://broker:4222"),
        ("tls://token@broker", "tls://broker"),
        ("nats://a:1, nats://u:p@b:2", "nats://a:1,nats://b:2"),
    ],
)
def test_urls_in_messages_carry_no_credentials(url: str, shown: str) -> None:
    assert redact(url) == shown


async def test_a_list_of_servers_connects_to_one_that_answers(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    url = f"nats://127.0.0.1:{free_port()},{nats_server.url}"
    async with bridge(url, "alpha", tmp_path) as (alpha, _):
        assert alpha.connected
