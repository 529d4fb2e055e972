"""Keeping the cyclic garbage collector out of the latency path (docs/PERFORMANCE.md "Garbage
collection").

CPython's full collection walks every tracked object.  A connected player holds about 250 of
them (trio tasks, coroutines, cancel scopes, wsproto state), so with 1,000 players online one
full collection is a pause of tens to hundreds of milliseconds on this machine, and a storm of
arrivals triggers several (each time the heap grows by a quarter).  Nearly all of those objects
live as long as their connection and are freed by reference counting when it ends (measured:
500 connections opened, frozen and closed left 110 objects in cycles), so they are moved out of
the collector's sight:

- at start-up, once the world, the store and the listeners are ready;
- after admissions: within ``every_s`` of a player getting in, the young generations are
  collected and everything is frozen (``gc.freeze`` is cheap: it moves a list).

What frozen objects leave in cycles is never collected while frozen, so once as many players
were admitted since the last review as are online (and at least REVIEW_AFTER_ADMISSIONS),
everything is unfrozen, collected once and frozen again: the garbage so kept stays below the
size of the live heap, and the one full pause is paid per that many admissions, not on a timer.
(``gc.get_freeze_count`` would tell the frozen heap's size directly, but it walks the whole
list: measured at 10 % of the CPU during a 1,000-player join storm.)  Young collections run at
CPython's default thresholds: measured at 1,000 listeners, they cost well under 1 % of the time
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import trio

# A review walks the whole heap once; this many admissions at least between two reviews.
REVIEW_AFTER_ADMISSIONS = 1000


def freeze_start_up() -> None:
    """Everything built before the first player lives as long as the process."""
    gc.collect()
    gc.freeze()


async def freeze_after_admissions(
    admissions: Callable[[], float], online: Callable[[], int], every_s: float = 1.0
) -> None:
    """Freeze what admissions built, at most once per ``every_s``; review (unfreeze, collect
    everything once, freeze again) once as many players were admitted since the last review
    as are online now, and at least REVIEW_AFTER_ADMISSIONS."""
    seen = reviewed = admissions()
    while True:
        await trio.sleep(every_s)
        count = admissions()
        if count == seen:
            continue
        seen = count
        if count - reviewed >= max(REVIEW_AFTER_ADMISSIONS, online()):
            reviewed = count
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(1)  # what is garbage already must not be frozen with the rest
        gc.freeze()
