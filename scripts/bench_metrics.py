"""Micro-benchmark: the cost of one metric update, ours against ``prometheus_client``'s own.

Usage (from the project root)::

    .venv/bin/python scripts/bench_metrics.py [--n 500000] [--repeat 5]

Prints ns per operation (the best of ``--repeat`` runs of ``--n`` calls each):

- ``mythos_rt`` (runtime/metrics.py): a bound counter's ``inc`` (what the per-frame and per-write
  call sites do), ``Metrics.inc`` by name, ``Metrics.inc`` with a label, a bound histogram's
  ``observe``, and the trio clock read the outbox makes when it goes from empty to non-empty;
- ``prometheus_client``: ``Counter.inc``, ``Counter.labels(...).inc`` and ``Histogram.observe``
  on a private registry, for comparison;
- one ``/metrics`` render of the whole catalogue (µs).

Timing only: nothing here can fail but an import.  Numbers vary with the machine's load.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram

from mythos_rt.runtime.metrics import Metrics


def best_ns(call: Callable[[], object], n: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=n, repeat=repeat)) / n * 1e9


def cases() -> list[tuple[str, Callable[[], object]]]:
    ours = Metrics()
    ours.gauge("sockets", lambda: 1)
    frames = ours.counter("frames_received")
    lag = ours.histogram("fanout_lag_seconds")
    registry = CollectorRegistry()
    counter = Counter("c", "a counter", registry=registry)
    labelled = Counter("l", "a labelled counter", ["status"], registry=registry)
    histogram = Histogram("h", "a histogram", registry=registry)
    return [
        ("mythos_rt bound counter inc", frames.inc),
        ("mythos_rt Metrics.inc(name)", lambda: ours.inc("frames_received")),
        (
            "mythos_rt Metrics.inc(name, status=)",
            lambda: ours.inc("handshakes_refused", status="401"),
        ),
        ("mythos_rt bound histogram observe", lambda: lag.observe(0.0042)),
        ("prometheus_client Counter.inc", counter.inc),
        ("prometheus_client labels().inc", lambda: labelled.labels(status="401").inc()),
        ("prometheus_client Histogram.observe", lambda: histogram.observe(0.0042)),
        ("(plain dict += 1, for scale)", _dict_add()),
    ]


def _dict_add() -> Callable[[], None]:
    counts = {"frames_received": 0}

    def add() -> None:
        counts["frames_received"] += 1

    return add


async def clock_read_ns(n: int, repeat: int) -> float:
    return best_ns(trio.current_time, n, repeat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best one counts")
    args = parser.parse_args()
    for name, call in cases():
        print(f"{name:<42} {best_ns(call, args.n, args.repeat):8.0f} ns")
    clock = trio.run(clock_read_ns, args.n, args.repeat)
    print(f"{'trio.current_time() (outbox timestamp)':<42} {clock:8.0f} ns")
    metrics = Metrics()
    metrics.gauge("sockets", lambda: 1)
    render_us = best_ns(metrics.render, 200, args.repeat) / 1000
    print(f"{'render of the whole catalogue':<42} {render_us:8.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
