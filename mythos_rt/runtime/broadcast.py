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

import logging
import math

import trio

from mythos_rt.runtime.metrics import CounterChild, HistogramChild
from mythos_rt.runtime.wsio import Outbox

log = logging.getLogger(__name__)

# At most one write per socket per this interval: when lines come faster, each socket gets them
# in one send (a send costs more than the rest of a delivery together).  A socket not written to
# in the last interval is written at once; a busy room's lines wait at most this long, and
# nobody else waits for them (docs/PERFORMANCE.md).
MIN_INTERVAL_S = 0.010


class Broadcaster:
    def __init__(
        self,
        bytes_sent: CounterChild,
        fanout_lag: HistogramChild,
        interval_s: float = MIN_INTERVAL_S,
    ) -> None:
        self._interval_s = interval_s
        self._due: list[Outbox] = []
        # Outboxes written to less than the interval ago, by the trio time of that write: a
        # round's writes share one key, so releasing them looks at a few keys, not every socket.
        self._held: dict[float, list[Outbox]] = {}
        self._wakeup = trio.Event()
        self._bytes_sent = bytes_sent
        self._fanout_lag = fanout_lag

    def schedule(self, outbox: Outbox) -> None:
        """Flush ``outbox`` in the next round (the outbox asks once, then waits its turn)."""
        self._due.append(outbox)
        if not self._wakeup.is_set():
            self._wakeup.set()

    async def serve(self) -> None:
        while True:
            release_at = min(self._held, default=math.inf) + self._interval_s
            with trio.move_on_at(release_at):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self.flush()

    def flush(self) -> None:
        """Write every due outbox whose socket had no write in the last interval; hold the
        others until theirs is over.  Called by the broadcaster's task each round, and after
        each frame a reader hands over (a command's frames then leave before that task yields).
        One lag observation per call, for its oldest frame (one per socket would cost more
        than the write)."""
        if not self._due and not self._held:
            return  # called after every frame received: mostly nothing to do
        now = trio.current_time()
        due, self._due = self._due, []
        for written_at in [at for at in self._held if at + self._interval_s <= now]:
            due += self._held.pop(written_at)
        if not due:
            return
        interval, held = self._interval_s, self._held
        oldest = math.inf
        written = 0
        for outbox in due:
            last = outbox.written_at
            if now < last + interval:
                held.setdefault(last, []).append(outbox)
                continue
            queued_at = outbox.queued_at
            try:
                sent = outbox.flush(now)
            except Exception:
                # A fault in one socket's write must not cost the rest of the round, nor the
                # task that flushes (another socket's reader, or the broadcaster itself).
                log.exception("writing to a socket failed")
                continue
            if sent:
                written += sent
                oldest = min(oldest, queued_at)
        if written:
            self._fanout_lag.observe(now - oldest)
            self._bytes_sent.inc(written)
