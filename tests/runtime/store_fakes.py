"""A backend for store-writer tests: it records what it is asked to do and fails on cue.

Put it behind ``SlowStore`` (every call takes 1 s of mock time, then runs in the Trio thread):
a cancellation can then land only before the call runs, as with ``trio.to_thread.run_sync``
before its thread starts, and each recorded call carries the mock time it ran at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import trio

from mythos_rt.core.writes import DeleteGlobalMute, Write
from mythos_rt.runtime.store import PermanentStoreError, StoreError


def write(name: str) -> Write:
    """A write told apart by its name (any write record would do: this backend runs none)."""
    return DeleteGlobalMute(name)


@attrs.frozen
class Call:
    at: float  # mock time
    what: str  # "apply", "check_writable" or the name a read was given
    writes: tuple[Write, ...] = ()
    error: StoreError | None = None


@attrs.define
class RecordingBackend:
    """``apply`` is all or nothing, like a transaction: a batch holding a write in
    ``poisoned`` raises ``PermanentStoreError``; while ``failures`` holds errors, each call
    raises the next one instead.  Failed calls are recorded too, with their error."""

    description = "recording backend"
    max_threads = 1
    calls: list[Call] = attrs.field(factory=list)
    failures: list[StoreError] = attrs.field(factory=list)
    poisoned: set[Write] = attrs.field(factory=set)

    def apply(self, writes: Sequence[Write]) -> None:
        error = self._failure() or self._poison(writes)
        self.calls.append(Call(_now(), "apply", tuple(writes), error))
        if error is not None:
            raise error

    def check_writable(self) -> None:
        self._run("check_writable")

    def read(self, name: str) -> str:
        self._run(name)
        return name

    def committed(self) -> list[Write]:
        """Every write that landed, in the order it landed."""
        return [w for batch in self.batches() for w in batch]

    def batches(self) -> list[tuple[Write, ...]]:
        return [c.writes for c in self.calls if c.what == "apply" and c.error is None]

    def landed(self, wanted: Write) -> int:
        """Where the successful ``apply`` holding ``wanted`` stands among all calls."""
        return self._first(lambda call: wanted in call.writes, f"{wanted!r} never landed")

    def index(self, what: str) -> int:
        """Where the successful call named ``what`` (a read) stands among all calls."""
        return self._first(lambda call: call.what == what, f"no {what!r} succeeded")

    def _first(self, wanted: Callable[[Call], bool], missing: str) -> int:
        found = [i for i, call in enumerate(self.calls) if call.error is None and wanted(call)]
        assert found, missing
        return found[0]

    def _run(self, what: str) -> None:
        error = self._failure()
        self.calls.append(Call(_now(), what, (), error))
        if error is not None:
            raise error

    def _poison(self, writes: Sequence[Write]) -> StoreError | None:
        bad = [w for w in writes if w in self.poisoned]
        return PermanentStoreError(f"constraint failed: {bad[0]!r}") if bad else None

    def _failure(self) -> StoreError | None:
        return self.failures.pop(0) if self.failures else None


def _now() -> float:
    """Trio's clock, from the Trio thread (``SlowStore``) or a worker thread (``Store``)."""
    try:
        return trio.current_time()
    except RuntimeError:
        return trio.from_thread.run_sync(trio.current_time)
