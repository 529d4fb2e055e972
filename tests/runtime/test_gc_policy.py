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
    admitted = online = 0
    gc_policy.freeze_start_up()
    at_start = gc.get_freeze_count()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gc_policy.freeze_after_admissions, lambda: admitted, lambda: online)
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


async def test_cycles_left_by_ended_connections_are_collected_at_the_review(
    thawed: None, autojump_clock: trio.abc.Clock
) -> None:
    admitted, online = 0, 1500
    gc_policy.freeze_start_up()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gc_policy.freeze_after_admissions, lambda: admitted, lambda: online)
        await trio.testing.wait_all_tasks_blocked()
        # A connection's objects in a cycle that ends while frozen: a freeze alone would keep
        # them forever.
        ended = [Cycle() for _ in range(100)]
        one_of_them = weakref.ref(ended[0])
        admitted += 1000
        await trio.sleep(1.5)
        assert gc.is_tracked(ended[0]) and gc.get_freeze_count() >= len(ended)
        del ended
        admitted += 499  # 1,499 admitted, 1,500 online: not yet
        await trio.sleep(1.5)
        gc.collect()
        assert one_of_them() is not None  # frozen: out of the collector's sight
        admitted += 1  # as many admitted since the last review as are online
        await trio.sleep(1.5)
        assert one_of_them() is None  # reviewed: collected
        nursery.cancel_scope.cancel()
