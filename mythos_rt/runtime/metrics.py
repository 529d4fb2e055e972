"""The server's metrics: one catalogue, cheap updates, Prometheus text by ``prometheus_client``.

Every metric is declared once in :data:`CATALOGUE` (name, type, HELP text, label names, buckets);
call sites name it and pass label values: ``metrics.inc("handshakes_refused", status="401")``.
A name or label set not in the catalogue raises at once, so a typo fails its test instead of
quietly starting a new series.

Why not ``prometheus_client.Counter`` itself: its updates take a lock and cost about 0.7 µs per
increment and 1.3 µs per histogram observation (``scripts/bench_metrics.py``), and the fan-out
path updates a histogram per socket write.  Here an update is an attribute add on a slotted
object (tens of ns when the child is bound once, ``Metrics.counter(...)``); ``prometheus_client``
does the rest at scrape time: a collector turns the values into metric families in a
:class:`~prometheus_client.CollectorRegistry` of this server's own (tests run many servers in
one process, so never the global default registry) and ``generate_latest`` writes the text.
Everything runs on the one Trio thread, so no lock is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

import attrs
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

PREFIX = "mythos_rt_"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

Kind = Literal["counter", "gauge", "histogram"]
LabelValues = tuple[str, ...]
# A gauge's reader: one value, or (for a labelled gauge) a value per tuple of label values.
GaugeReader = Callable[[], float | Mapping[LabelValues, float]]

# Seconds, from 100 µs (a command in a quiet room) to 5 s (a socket that stopped reading).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
)  # fmt: skip


@attrs.frozen
class MetricDef:
    name: str  # without the prefix, and for counters without ``_total``
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = LATENCY_BUCKETS


def _counter(name: str, help: str, *labels: str) -> MetricDef:
    return MetricDef(name, "counter", help, labels)


def _gauge(name: str, help: str, *labels: str) -> MetricDef:
    return MetricDef(name, "gauge", help, labels)


def _histogram(name: str, help: str) -> MetricDef:
    return MetricDef(name, "histogram", help)


CATALOGUE: tuple[MetricDef, ...] = (
    # --- the game port: TCP, handshakes, sockets ---
    _counter(
        "connections_opened", "TCP connections accepted on the game port, refused ones included."
    ),
    _counter("connections_closed", "TCP connections on the game port that have ended."),
    _counter(
        "connection_errors",
        "Connection handlers that failed unexpectedly (that connection only was dropped; the"
        " traceback is logged).",
    ),
    _counter(
        "handshakes_timed_out",
        "Upgrades not completed (with authentication) within HANDSHAKE_TIMEOUT_S; dropped"
        " without an answer.",
    ),
    _counter("handshakes_abandoned", "Handshakes cut short because the server began draining."),
    _counter(
        "handshakes_refused",
        "WebSocket handshakes refused, by HTTP status (a browser gets the matching 4xxx close).",
        "status",
    ),
    _counter(
        "connections_refused",
        "Connections closed at accept, before anything was read (a 503, or a line for telnet, is"
        " written first): per_ip (MAX_HANDSHAKES_PER_IP still handshaking from that address) or"
        " total (MAX_CONNECTIONS open).",
        "reason",
    ),
    _counter("sockets_admitted", "WebSocket sockets admitted to the game."),
    _counter(
        "frames_after_close",
        "Data frames a client sent after the server asked its socket to close; not acted upon.",
    ),
    _counter(
        "telnet_connections_opened", "TCP connections accepted on the telnet port (docs/TELNET.md)."
    ),
    _counter("telnet_connections_closed", "TCP connections on the telnet port that have ended."),
    _counter("telnet_sockets_admitted", "Telnet logins that became game sockets."),
    _counter("telnet_subnegotiations_dropped", "Telnet subnegotiations over 8 KiB, dropped."),
    _counter(
        "telnet_command_floods",
        "Telnet connections closed for sending over 1,000 IAC commands a minute.",
    ),
    _counter(
        "socket_closes",
        "Admitted sockets that ended, by WebSocket close code (1006: no close frame, the peer"
        " vanished or stopped answering pings).",
        "code",
    ),
    _counter(
        "frames_received", "Data frames received from admitted sockets, refused ones included."
    ),
    _counter("frames_rate_limited", "Frames refused by the per-socket frame rate limit."),
    _counter(
        "error_frames_sent", "Error frames sent (validation, rate limit, failed token refresh)."
    ),
    _counter("bytes_sent", "Bytes of data frames written to admitted sockets."),
    _counter("heartbeat_timeouts", "Sockets dropped because no pong came within PING_TIMEOUT_S."),
    _counter("http_api_responses", "HTTP API (/v1) responses, by status.", "status"),
    # --- the game ---
    _counter("chat_messages", "Chat lines this instance delivered, by channel.", "channel"),
    _counter(
        "rule_errors",
        "Commands whose rule raised: their changes were undone, the player told, the fault"
        " logged.",
    ),
    _histogram(
        "command_seconds",
        "Time the hub took to handle one command: rules, routing, encoding and queueing the"
        " frames for every recipient.",
    ),
    _histogram(
        "fanout_lag_seconds",
        "Time from the hub queueing a frame for a socket to its write into the socket: one"
        " observation per broadcaster round (for the oldest frame it wrote in that round) and"
        " one per write by a socket's own sender (a socket whose kernel buffer was full), each"
        " for its oldest frame.",
    ),
    _gauge("sockets", "WebSocket sockets currently admitted."),
    _gauge("connections_open", "TCP connections currently open on the game port."),
    _gauge(
        "presences",
        "Players in the world, by state: active (a socket here), linkdead (in the disconnect"
        " grace) and remote (held by another instance).",
        "state",
    ),
    _gauge("outbox_bytes", "Bytes queued in every socket's outbox, waiting to be written."),
    _gauge("trio_tasks", "Trio tasks alive in the server process."),
    # --- the store ---
    _gauge("store_healthy", "1 while store writes succeed, 0 while they are being retried."),
    _counter(
        "store_batches_committed", "Store transactions committed by the writer (one per batch)."
    ),
    _counter("store_writes_committed", "Store writes committed (in those transactions)."),
    _counter("store_writes_refused", "Writes refused because 100,000 were already queued."),
    _counter("store_write_errors", "Batches that failed transiently (retried with backoff)."),
    _counter(
        "store_writes_withdrawn",
        "Confirmed-on-commit writes given up after STORE_ACK_TIMEOUT_S of store failure.",
    ),
    _counter(
        "store_writes_set_aside",
        "Writes the store refused permanently: set aside, logged once, never retried.",
    ),
    # --- several instances over NATS (docs/NATS.md) ---
    _gauge("nats_connected", "1 while connected to NATS, 0 otherwise."),
    _counter("nats_published", "Publishes handed to nats-py."),
    _counter("nats_publish_batches", "Trio-to-asyncio crossings that carried publishes."),
    _counter(
        "nats_outbound_dropped",
        "Publishes dropped: queue full, outage longer than the buffer, or refused by nats-py.",
    ),
    _counter("nats_received", "Valid messages from NATS put on the inbound queue."),
    _counter(
        "nats_inbound_own", "Messages from NATS carrying this instance's own header (skipped)."
    ),
    _counter("nats_inbound_dropped", "Valid inbound messages dropped: the inbound queue was full."),
    _counter(
        "nats_inbound_errors",
        "Inbound messages nats-py handed over whose handling failed (logged).",
    ),
    _counter("nats_invalid_messages", "Inbound messages that failed the checks (dead letters)."),
    _counter(
        "nats_dead_letter_write_errors",
        "Dead letters that could not be written to the dead-letter file.",
    ),
    _counter("nats_errors", "Errors reported by the NATS client."),
    _counter("nats_disconnects", "Times the NATS connection was lost."),
    _counter("nats_reconnects", "Times the NATS connection came back."),
    _counter(
        "cluster_instances_lost",
        "Instances declared lost: silent for CLUSTER_DEAD_AFTER_S while players they held"
        " were here.",
    ),
    _counter(
        "cluster_errors",
        "Inbound cluster messages that passed the checks but failed in the hub (logged; the"
        " message is lost).",
    ),
)


class CounterChild:
    """One counter series.  Bind it once (:meth:`Metrics.counter`) on a hot path."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        # An int while every amount is one (counts of things), so tests and scripts can use it
        # as a count; a float once a float amount is added.
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class HistogramChild:
    """One histogram series: a count per bucket (not cumulative; summed at scrape time)."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le = "<=").
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


class _Family:
    def __init__(self, definition: MetricDef) -> None:
        self.definition = definition
        self.counters: dict[LabelValues, CounterChild] = {}
        self.histograms: dict[LabelValues, HistogramChild] = {}
        self.reader: GaugeReader | None = None

    def key(self, labels: Mapping[str, str]) -> LabelValues:
        names = self.definition.labels
        try:
            key = tuple([labels[name] for name in names])
        except KeyError:
            key = ()
        if len(key) != len(labels) or len(key) != len(names):
            raise ValueError(
                f"metric {self.definition.name!r} takes labels {names}, not {tuple(labels)}"
            )
        return key


class Metrics:
    """This server's metrics; one per server (tests start many in one process)."""

    def __init__(self, catalogue: tuple[MetricDef, ...] = CATALOGUE) -> None:
        self._families = {d.name: _Family(d) for d in catalogue}
        # Unlabelled counters exist from the start (so they read 0 before their first event)
        # and ``inc`` by name finds them in one dict look-up.
        self._plain: dict[str, CounterChild] = {
            d.name: self.counter(d.name) for d in catalogue if d.kind == "counter" and not d.labels
        }
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def _family(self, name: str, kind: Kind) -> _Family:
        family = self._families.get(name)
        if family is None or family.definition.kind != kind:
            raise KeyError(f"no {kind} named {name!r} in the metrics catalogue")
        return family

    def counter(self, name: str, **labels: str) -> CounterChild:
        family = self._family(name, "counter")
        key = family.key(labels)
        child = family.counters.get(key)
        if child is None:
            child = family.counters[key] = CounterChild()
        return child

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        child = None if labels else self._plain.get(name)
        if child is None:
            child = self.counter(name, **labels)
        child.value += amount

    def histogram(self, name: str, **labels: str) -> HistogramChild:
        family = self._family(name, "histogram")
        key = family.key(labels)
        child = family.histograms.get(key)
        if child is None:
            child = family.histograms[key] = HistogramChild(family.definition.buckets)
        return child

    def observe(self, name: str, value: float, **labels: str) -> None:
        self.histogram(name, **labels).observe(value)

    def gauge(self, name: str, read: GaugeReader) -> None:
        """Read at scrape time; a labelled gauge's reader returns {label values: value}."""
        self._family(name, "gauge").reader = read

    def value(self, name: str, **labels: str) -> float:
        """A counter's value (0 if never incremented), for tests and scripts."""
        family = self._family(name, "counter")
        child = family.counters.get(family.key(labels))
        return 0 if child is None else child.value

    def render(self) -> str:
        """The Prometheus text exposition of every metric in the catalogue."""
        return generate_latest(self.registry).decode()

    def families(self) -> Iterator[Metric]:
        for family in self._families.values():
            metric = _to_metric(family)
            if metric is not None:
                yield metric


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()


def _to_metric(family: _Family) -> Metric | None:
    d = family.definition
    name, labels = PREFIX + d.name, list(d.labels)
    if d.kind == "counter":
        counter = CounterMetricFamily(name, d.help, labels=labels)
        for key, child in sorted(family.counters.items()):
            counter.add_metric(list(key), child.value)
        return counter
    if d.kind == "histogram":
        histogram = HistogramMetricFamily(name, d.help, labels=labels)
        children = family.histograms or ({} if d.labels else {(): HistogramChild(d.buckets)})
        for key, hist in sorted(children.items()):
            histogram.add_metric(list(key), _cumulative(d.buckets, hist.counts), hist.sum)
        return histogram
    if family.reader is None:
        return None  # a gauge this server does not have (the NATS link without NATS, say)
    gauge = GaugeMetricFamily(name, d.help, labels=labels)
    read = family.reader()
    values = read if isinstance(read, Mapping) else {(): read}
    for key, value in sorted(values.items()):
        gauge.add_metric(list(key), float(value))
    return gauge


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*(repr(b) for b in bounds), "+Inf"), counts, strict=True):
        total += count
        buckets.append((bound, total))
    return buckets
