"""The broadcaster: one task in the root nursery that writes every socket's frames of a
scheduling round straight into its TCP socket.

A frame the hub queues for a socket whose sender is idle does not wake that sender.  The outbox
asks the broadcaster instead (:meth:`Broadcaster.schedule`); once per scheduling round the
broadcaster writes each such outbox's frames with one non-blocking send (the kernel's buffer
takes them at once unless the peer is behind).  Delivering a line to 1,000 listeners is then one
task switch and 1,000 sends, not 1,000 task switches.  What the kernel does not take is handed
to that socket's sender, which waits for the socket like before: the slow-client policy, the
ordering and the whole-frame guarantees are the outbox's (:class:`mythos_rt.runtime.wsio.Outbox`).
"""

from __future__ import annotations

import math

import trio

from mythos_rt.runtime.metrics import CounterChild, HistogramChild
from mythos_rt.runtime.wsio import Outbox

# At most one round of writes per this interval: when lines come faster, each socket gets them
# in one send (a send costs more than the rest of a delivery together).  A line after a quiet
# spell goes at once; a busy room's lines wait at most this long (docs/PERFORMANCE.md).
MIN_INTERVAL_S = 0.010


class Broadcaster:
    def __init__(
        self,
        bytes_sent: CounterChild,
        fanout_lag: HistogramChild,
        interval_s: float = MIN_INTERVAL_S,
    ) -> None:
        self._interval_s = interval_s
        self._flushed_at = -math.inf  # trio time of the last round of writes
        self._due: list[Outbox] = []
        self._wakeup = trio.Event()
        self._bytes_sent = bytes_sent
        self._fanout_lag = fanout_lag

    def schedule(self, outbox: Outbox) -> None:
        """Flush ``outbox`` in the next round (the outbox asks once per round)."""
        if not self._due:
            self._wakeup.set()
        self._due.append(outbox)

    async def serve(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            # A busy room's next lines join this write instead of costing a send each.
            await trio.sleep_until(self._flushed_at + self._interval_s)
            self._flushed_at = trio.current_time()
            self.flush()

    def flush_if_idle(self) -> None:
        """Write what is due now, in the caller's task, unless a round of writes went out less
        than the interval ago: a command's frames then leave before its task yields, one
        scheduling round sooner (the caller is the receive loop, after each frame)."""
        if self._due and trio.current_time() >= self._flushed_at + self._interval_s:
            self._flushed_at = trio.current_time()
            self.flush()

    def flush(self) -> None:
        """Write everything due.  One lag observation per round, for its oldest frame (an
        observation per socket would cost more than the write)."""
        due, self._due = self._due, []
        oldest: float | None = None
        written = 0
        for outbox in due:
            queued_at = outbox.queued_at
            sent = outbox.flush()
            if sent:
                written += sent
                oldest = queued_at if oldest is None else min(oldest, queued_at)
        if oldest is not None:
            self._fanout_lag.observe(trio.current_time() - oldest)
            self._bytes_sent.inc(written)
