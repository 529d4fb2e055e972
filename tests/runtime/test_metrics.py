"""``/metrics`` (docs/OPERATIONS.md "Metrics"): every family has HELP and TYPE, codes are labels,
histograms have ordered cumulative buckets; parsed with prometheus_client's own parser (and
checked by ``promtool check metrics`` when it is installed)."""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from mythos_rt.runtime.metrics import CATALOGUE, CONTENT_TYPE, PREFIX, Metrics
from mythos_rt.runtime.ops_http import OpsState, route
from tests.runtime.harness import Harness, running

# scripts/test fetches it into the venv (scripts/fetch_promtool) where apt-get can.
_VENV_BIN = str(Path(sys.executable).parent)
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which(
    "promtool", path=os.pathsep.join([_VENV_BIN, os.environ.get("PATH", "")])
)


async def some_traffic(h: Harness) -> None:
    armitage = await h.connect("Armitage")
    wilmarth = await h.connect("Wilmarth")
    await armitage.command("say", "The stars are right.")
    await wilmarth.next_event("chat_message")
    await armitage.command("look")
    await armitage.next_event("command_response")
    status, _, _ = await h.raw_handshake("/v1/api/ws?token=forged")
    assert status == 401
    await wilmarth.ws.aclose(1000)
    await trio.testing.wait_all_tasks_blocked()


async def metrics_after_traffic(tmp_path: Path) -> str:
    async with running(tmp_path) as h:
        await some_traffic(h)
        return h.app.metrics.render()


def samples_of(text: str) -> dict[str, list[Sample]]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


async def test_every_family_has_help_type_and_labels_instead_of_baked_in_codes(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        await some_traffic(h)
        response = route(OpsState(h.app.metrics, lambda: True, lambda: 1), "GET", "/metrics")
        text = response.body.decode()
    assert response.content_type == CONTENT_TYPE
    families = list(text_string_to_metric_families(text))
    for family in families:
        assert f"# HELP {family.name}" in text and len(family.documentation) > 10, family.name
        assert family.type in ("counter", "gauge", "histogram"), family.name
        assert family.name.startswith(PREFIX)
        if family.type == "counter":
            assert all(s.name == family.name + "_total" for s in family.samples), family.name
        assert not any(ch.isdigit() for ch in family.name), f"a code baked into {family.name}"
    declared = {PREFIX + d.name for d in CATALOGUE if d.kind != "gauge"}
    assert declared <= {f.name for f in families}, "counters and histograms exist from the start"

    samples = samples_of(text)

    def value(name: str, **labels: str) -> float:
        # A counter's family is named without _total, its sample with it.
        [sample] = [s for s in samples[PREFIX + name] if s.labels == labels]
        return sample.value

    assert value("handshakes_refused", status="401") == 1
    assert value("chat_messages", channel="say") == 1
    assert value("socket_closes", code="1000") == 1
    assert value("sockets_admitted") == 2
    assert value("sockets") == 1
    assert value("presences", state="active") == 1
    assert value("presences", state="linkdead") == 1  # Wilmarth is in the disconnect grace
    assert value("trio_tasks") > 10
    assert value("outbox_bytes") == 0
    assert value("connections_open") == 1


async def test_histograms_count_commands_and_fan_out_writes(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    samples = samples_of(await metrics_after_traffic(tmp_path))
    for name, at_least in (("command_seconds", 2), ("fanout_lag_seconds", 3)):
        series = samples[PREFIX + name]
        buckets = [s for s in series if s.name.endswith("_bucket")]
        bounds = [float(s.labels["le"]) for s in buckets]
        assert bounds == sorted(bounds) and math.isinf(bounds[-1]), name
        counts = [s.value for s in buckets]
        assert counts == sorted(counts), f"{name}: buckets must be cumulative"
        [count] = [s.value for s in series if s.name.endswith("_count")]
        [total] = [s.value for s in series if s.name.endswith("_sum")]
        assert count == counts[-1] >= at_least, name
        assert total >= 0


def test_a_name_or_label_outside_the_catalogue_is_refused() -> None:
    metrics = Metrics()
    with pytest.raises(KeyError):
        metrics.inc("handshakes_refused_401")
    with pytest.raises(ValueError, match="status"):
        metrics.inc("handshakes_refused")
    with pytest.raises(KeyError):
        metrics.observe("sockets", 1.0)  # a gauge, not a histogram


def test_a_bucket_holds_values_up_to_and_including_its_bound() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.0011, 100.0):
        metrics.observe("command_seconds", seconds)
    samples = samples_of(metrics.render())[PREFIX + "command_seconds"]
    le = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert (le["0.001"], le["0.0025"], le["5.0"], le["+Inf"]) == (1, 2, 2, 3)


def test_each_server_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.inc("frames_received", 5)
    assert two.value("frames_received") == 0
    assert "mythos_rt_frames_received_total 0.0" in two.render()


@pytest.mark.skipif(
    PROMTOOL is None, reason="no promtool (scripts/fetch_promtool, PROMTOOL or PATH)"
)
async def test_promtool_finds_nothing_to_complain_about(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    text = await metrics_after_traffic(tmp_path)
    assert PROMTOOL is not None
    result = await trio.run_process(
        [PROMTOOL, "check", "metrics"],
        stdin=text.encode(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    complaints = (result.stdout + result.stderr).decode()
    assert result.returncode == 0 and not complaints.strip(), complaints


def test_the_operations_guide_lists_every_metric_with_its_help() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "OPERATIONS.md").read_text()
    for d in CATALOGUE:
        name = PREFIX + d.name + ("_total" if d.kind == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in d.labels)
        row = f"| `{name}` | {d.kind} | {labels} | {d.help} |"
        assert row in guide, f"docs/OPERATIONS.md lacks (or has another text for): {row}"
