"""Counters and gauges for ``/metrics`` (Prometheus text format).  Owned by the server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

PREFIX = "mythos_rt_"


class Metrics:
    def __init__(self) -> None:
        self._counters: Counter[str] = Counter()
        self._gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, amount: int = 1) -> None:
        self._counters[name] += amount

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self._gauges[name] = read

    def value(self, name: str) -> int:
        return self._counters[name]

    def render(self) -> str:
        lines: list[str] = []
        for name, value in sorted(self._counters.items()):
            lines += [f"# TYPE {PREFIX}{name}_total counter", f"{PREFIX}{name}_total {value}"]
        for name, read in sorted(self._gauges.items()):
            lines += [f"# TYPE {PREFIX}{name} gauge", f"{PREFIX}{name} {read():g}"]
        return "\n".join(lines) + "\n"
