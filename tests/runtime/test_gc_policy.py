"""The heap is frozen after admissions, so full collections stop walking every connected
player's objects (runtime/gc_policy.py); what is garbage already is never frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from mythos_rt.runtime import gc_policy


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session keeps a normal collector


class Cycle:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


async def test_admissions_are_frozen_within_a_second_and_garbage_is_not(
    thawed: None, autojump_clock: trio.abc.Clock
) -> None:
    admitted = 0
    gc_policy.freeze_start_up()
    at_start = gc.get_freeze_count()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gc_policy.freeze_after_admissions, lambda: admitted)
        await trio.sleep(5)
        assert gc.get_freeze_count() <= at_start  # nobody came: nothing frozen
        kept = [Cycle() for _ in range(1000)]  # what a new connection holds
        garbage = Cycle()
        collected = weakref.ref(garbage)
        del garbage  # unreachable, but only a collection can tell
        admitted += 1
        await trio.sleep(1.5)
        assert gc.get_freeze_count() >= at_start + len(kept)
        gc.collect()
        assert collected() is None  # collected before the freeze, not frozen forever
        nursery.cancel_scope.cancel()
    del kept


async def test_the_frozen_heap_is_reviewed_when_it_doubles(
    thawed: None, autojump_clock: trio.abc.Clock
) -> None:
    admitted = 0
    gc_policy.freeze_start_up()
    at_start = gc.get_freeze_count()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gc_policy.freeze_after_admissions, lambda: admitted)
        await trio.testing.wait_all_tasks_blocked()
        # Cycles that end while frozen: a freeze alone would keep them forever.
        ended = [Cycle() for _ in range(at_start + 1000)]
        one_of_them = weakref.ref(ended[0])
        admitted += 1
        await trio.sleep(1.5)  # frozen with the rest (the heap has not doubled yet)...
        assert gc.get_freeze_count() >= at_start + len(ended)
        del ended
        big = [Cycle() for _ in range(2 * at_start)]  # ...now it has
        admitted += 1
        await trio.sleep(1.5)
        # Reviewed: the ended cycles were collected, the live ones frozen again.
        assert one_of_them() is None
        assert gc.get_freeze_count() >= len(big)
        nursery.cancel_scope.cancel()
    del big
